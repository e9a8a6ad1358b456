"""Migration 0017 (`engine sync`): events.origin and events.change_key, sync_runs; down and up
again on PostgreSQL and SQLite, the events stored before it kept, the new columns kept as stored."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect, text

from engine.db.migrate import alembic_config, upgrade
from engine.settings import Settings
from tests.engine.test_migrations import _diff

BEFORE = "0013"


def _shape(url: str) -> tuple[set[str], set[str], str]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            found = inspect(connection)
            columns = {column["name"] for column in found.get_columns("events")}
            indexes = {index["name"]: index for index in found.get_indexes("events")}
            options = indexes["ix_events_source_received_at"].get("dialect_options", {})
            where = options.get("postgresql_where")
            if where is None:
                where = options.get("sqlite_where")
            predicate = "" if where is None else str(where).strip("()")
            return columns & {"origin", "change_key"}, set(found.get_table_names()) & {"sync_runs"}, predicate
    finally:
        engine.dispose()


def _down_and_up(settings: Settings) -> None:
    url = settings.sqlalchemy_url
    upgrade(settings, BEFORE)
    engine = create_engine(url)
    with engine.begin() as connection:  # an event stored before 0017
        connection.execute(
            text(
                "INSERT INTO events (source, type, dedupe_key, status, correlation_id, received_at, failures) "
                "VALUES ('hotmart', 'PURCHASE_APPROVED', 'hotmart:before', 'processed', 'c', CURRENT_TIMESTAMP, 0)"
            )
        )
    engine.dispose()
    upgrade(settings)
    assert _shape(url) == ({"origin", "change_key"}, {"sync_runs"}, "origin IS NULL")
    command.downgrade(alembic_config(settings), BEFORE)
    assert _shape(url) == (set(), set(), "")
    upgrade(settings)
    assert _diff(url) == []
    engine = create_engine(url)
    with engine.connect() as connection:
        kept = connection.execute(text("SELECT dedupe_key, origin, change_key FROM events")).all()
    engine.dispose()
    assert [tuple(row) for row in kept] == [("hotmart:before", None, None)]


def test_0017_down_and_up_on_sqlite(tmp_path):
    _down_and_up(Settings(ENGINE_ENV="test", var_dir=tmp_path))


@pytest.mark.slow
def test_0017_down_and_up_on_postgresql_and_the_new_columns_are_kept_as_stored(postgres_url):
    import psycopg

    from tests.conftest import throwaway_database

    with throwaway_database("engine_test_0017") as url:
        settings = Settings(ENGINE_ENV="test", database_url=url)
        _down_and_up(settings)
        with psycopg.connect(url, autocommit=True) as conn:
            for column, value in (("change_key", "'hotmart:x'"), ("origin", "'hotmart-api'")):
                with pytest.raises(psycopg.errors.RestrictViolation, match="keeps its payload.*origin and change key"):
                    conn.execute(f"UPDATE events SET {column} = {value}")
            conn.execute("UPDATE events SET status = 'ignored'")  # what the worker writes still goes
