"""Migration 0010: the per-event queries' indexes exist on PostgreSQL, the open-status ones partial,
and the planner takes them for the queries they were made for (bench/event_cost.py measures why)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session

from engine.db.migrate import upgrade
from engine.settings import Settings

OPEN_STEPS = ("'pending'", "'running'", "'retrying'", "'failed'")
OPEN_EVENTS = ("'received'", "'held'", "'processing'", "'retrying'")

# index -> (its table, the columns it starts with, what its predicate names; None: not partial)
EXPECTED = {
    "ix_action_runs_open_membership": (
        "action_runs",
        "(membership_id, id)",
        (*OPEN_STEPS, "membership_id IS NOT NULL"),
    ),
    "ix_action_runs_retrying": ("action_runs", "(event_id, retry_at)", ("'retrying'",)),
    "ix_action_runs_errors": ("action_runs", "(error, status)", ("error IS NOT NULL",)),
    "ix_action_runs_event_id_id": ("action_runs", "(event_id, id)", None),
    "ix_action_runs_action_status": ("action_runs", "(action, status)", None),
    "ix_events_open_student": ("events", "(student_id, id)", (*OPEN_EVENTS, "student_id IS NOT NULL")),
    "ix_events_open_email": ("events", "(email)", (*OPEN_EVENTS, "email IS NOT NULL")),
    "ix_events_open_received": ("events", "(received_at, id)", (*OPEN_EVENTS, "received_at IS NOT NULL")),
    "ix_events_transaction_type": ("events", "(transaction, type)", None),
    "ix_events_type_status": ("events", "(type, status)", None),
    "ix_events_source_received_at": ("events", "(source, received_at)", ("origin IS NULL",)),  # 0011, 0017
    "ix_class_enrollments_changes": ("class_enrollments", "(class_id, changed_at, id)", None),  # migration 0013
    "ix_alerts_unnotified": ("alerts", "(id)", ("notified IS NULL",)),
    "ix_alerts_unacknowledged": ("alerts", "(id)", ("acknowledged_at IS NULL",)),
    "ix_onboarding_tokens_unused_membership": (
        "onboarding_tokens",
        "(membership_id)",
        ("used_at IS NULL", "membership_id IS NOT NULL"),
    ),
}
# Replaced by the ones above. No index of action_runs starts with the status any more: the issue's
# queries read every open step of every student through it.
DROPPED = ("ix_action_runs_status", "ix_action_runs_event_id", "ix_events_type", "ix_events_transaction")


def _definitions(connection) -> dict[str, tuple[str, str]]:
    rows = connection.execute(text("SELECT indexname, tablename, indexdef FROM pg_indexes WHERE schemaname = 'public'"))
    return {name: (table, definition) for name, table, definition in rows}


def test_the_indexes_exist_and_the_open_status_ones_are_partial(postgres_url):
    engine = create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as connection:
        found = _definitions(connection)
        options = dict(
            connection.execute(
                text("SELECT relname, array_to_string(reloptions, ',') FROM pg_class WHERE relname = ANY(:tables)"),
                {"tables": ["events", "action_runs", "scheduled_events", "grants"]},
            ).all()
        )
    engine.dispose()
    for name, (table, columns, predicate) in EXPECTED.items():
        assert name in found, f"{name} is missing"
        where, definition = found[name]
        assert where == table
        head, _, condition = definition.partition(" WHERE ")
        assert head.endswith(columns), definition
        if predicate is None:
            assert not condition, definition
        else:
            for part in predicate:
                assert part in condition, definition
    for name in DROPPED:
        assert name not in found
    # The hot tables are vacuumed and analyzed after 1 % of their rows changed.
    for table, reloptions in options.items():
        assert "autovacuum_vacuum_scale_factor=0.01" in reloptions, table
        assert "autovacuum_analyze_scale_factor=0.01" in reloptions, table


@pytest.mark.slow
def test_a_memberships_waiting_steps_are_read_from_the_partial_index(postgres_url):
    """The issue's example: engine.pipeline.ordering asks for a membership's steps not done yet.
    On a year of steps (all done but a few) the plan reads the partial index on the membership,
    not the status index (which held every open step of every student, and their dead versions)."""
    with _course_history() as engine:
        statements = [(sql, params) for sql, params in _statements_of_expected(engine) if "FROM action_runs" in sql]
        assert statements, "engine.pipeline.ordering asked nothing of action_runs"
        sql, params = statements[0]
        with engine.connect() as connection:
            plan = "\n".join(row[0] for row in connection.exec_driver_sql("EXPLAIN " + sql, params))
            assert "ix_action_runs_open_membership" in plan, plan
            # The statuses are constants in the SQL: a generic plan of the prepared statement (the
            # driver prepares a statement run five times) may use the partial index too.
            names: list[str] = []
            numbered = re.sub(r"%\((\w+)\)s", lambda m: f"${names.append(m.group(1)) or len(names)}", sql)
            connection.exec_driver_sql(f"PREPARE waiting AS {numbered}")
            connection.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
            values = ", ".join(_sql_literal(params[name]) for name in names)
            plan = "\n".join(row[0] for row in connection.exec_driver_sql(f"EXPLAIN EXECUTE waiting({values})"))
            assert "ix_action_runs_open_membership" in plan, plan
            connection.rollback()


def _history(connection) -> None:
    """A course's steps: 400 memberships with 50 finished steps each and a few still waiting."""
    connection.exec_driver_sql(
        """
            INSERT INTO students (id, email, created_at, updated_at)
                SELECT g, 'student' || g || '@example.com', now(), now() FROM generate_series(1, 400) g;
            INSERT INTO memberships (id, student_id, product_key, state, state_changed_at, created_at, updated_at)
                SELECT g, g, 'curso', 'active', now(), now(), now() FROM generate_series(1, 400) g;
            INSERT INTO events (id, source, type, dedupe_key, status, correlation_id, received_at, student_id)
                SELECT g, 'hotmart', 'PURCHASE_APPROVED', 'k' || g, 'processed', 'c', now(), 1 + mod(g, 400)
                FROM generate_series(1, 4000) g;
            INSERT INTO action_runs (event_id, membership_id, step_index, action, params, status, attempts,
                                     created_at)
                SELECT 1 + g / 5, 1 + mod(g / 5, 400), mod(g, 5), 'add_tag', '{}',
                       CASE WHEN mod(g, 997) = 0 THEN 'pending' ELSE 'done' END, 1, now()
                FROM generate_series(0, 19999) g;
            """
    )


@contextlib.contextmanager
def _course_history() -> Iterator[Engine]:
    """An engine on a throwaway database, migrated, holding :func:`_history`, analyzed."""
    from tests.conftest import throwaway_database

    with throwaway_database("engine_test_indexes") as url:
        upgrade(Settings(ENGINE_ENV="test", database_url=url))
        engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
        try:
            with engine.begin() as connection:
                _history(connection)
                connection.execute(text("ANALYZE"))
            yield engine
        finally:
            engine.dispose()


def _statements_of(engine: Engine, run: Callable[[Session], object]) -> list[tuple[str, dict]]:
    """The statements ``run`` sends, with their parameters."""
    statements: list[tuple[str, dict]] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append((statement, dict(parameters or {})))

    event.listen(engine, "before_cursor_execute", record)
    try:
        with Session(engine) as session:
            run(session)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return statements


def _statements_of_expected(engine: Engine) -> list[tuple[str, dict]]:
    """The statements engine.pipeline.ordering runs to know a membership's access and timers."""
    from engine.db.models import Membership
    from engine.pipeline.realized import expected

    return _statements_of(engine, lambda session: expected(session, session.get(Membership, 7)))


def _sql_literal(value: object) -> str:
    return "'" + value.replace("'", "''") + "'" if isinstance(value, str) else str(value)


@pytest.mark.slow
def test_a_platforms_last_webhook_is_one_index_lookup_even_for_a_platform_that_never_sent_one():
    """The silence alert and /metrics ask it of every platform at every sweep and scrape: on the
    received_at index alone, a platform with no event made it a read of every event."""
    from engine.db.webhooks import last_webhook_at

    def ask(session: Session) -> None:
        assert last_webhook_at(session, "kiwify") is None
        assert last_webhook_at(session, "hotmart") is not None

    with _course_history() as engine:
        statements = _statements_of(engine, ask)
        assert len(statements) == 2
        with engine.connect() as connection:
            plans = [
                "\n".join(row[0] for row in connection.exec_driver_sql("EXPLAIN " + sql, params))
                for sql, params in statements
            ]
    # The platform that never sent one: straight to where its rows would be.
    assert "ix_events_source_received_at" in plans[0] and "Filter" not in plans[0], plans[0]
    # One that did: its newest row, by either index; never a read of the table.
    assert "Seq Scan" not in plans[1], plans[1]


@pytest.mark.slow
def test_a_page_of_a_classs_changes_reads_its_index_from_the_cursor():
    """The course platform's read API asks for the changes after a cursor, oldest first, a page at a
    time: the plan reads ix_class_enrollments_changes from the cursor on, in the one class (never
    the whole table, nor the other classes' rows)."""
    from datetime import UTC, datetime

    from engine.service.classes import Position, enrollment_page

    with _course_history() as engine:
        with engine.begin() as connection:
            connection.exec_driver_sql(
                """
                    INSERT INTO classes (id, key, name)
                        SELECT g, 'turma-' || g, 'Turma ' || g FROM generate_series(1, 4) g;
                    INSERT INTO class_enrollments (class_id, student_id, created_at, changed_at, removed_at)
                        SELECT 1 + mod(g, 4), 1 + g / 4, now(), timestamp '2026-01-01' + g * interval '1 minute',
                               CASE WHEN mod(g, 7) = 0 THEN now() END
                        FROM generate_series(0, 1599) g;
                    ANALYZE class_enrollments;
                    """
            )
        after = Position(datetime(2026, 1, 1, 12, tzinfo=UTC), 0)
        statements = _statements_of(
            engine, lambda session: enrollment_page(session, "turma-2", {}, after=after, limit=100)
        )
        sql, params = next((sql, params) for sql, params in statements if "FROM class_enrollments" in sql)
        with engine.connect() as connection:
            plan = "\n".join(row[0] for row in connection.exec_driver_sql("EXPLAIN " + sql, params))
    [condition] = re.findall(r"Index Cond: (.*)", plan.split("ix_class_enrollments_changes", 1)[1])
    assert "class_id =" in condition and "changed_at >=" in condition, plan
    assert "Seq Scan on class_enrollments" not in plan, plan
