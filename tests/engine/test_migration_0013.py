"""Migration 0013 (class_enrollments keeps removals), up and down, on SQLite and PostgreSQL: the rows
enrolled before it keep their time as their change time and the membership whose grant gave them
the class; down again, the tombstones go and every enrollment stays."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect, text

from engine.db.migrate import alembic_config, upgrade
from engine.settings import Settings
from tests.engine.test_migrations import _diff

SEED = [
    "INSERT INTO students (id, email, created_at, updated_at) VALUES"
    " (1, 'ana@example.com', '2026-01-02 10:00:00+00', '2026-01-02 10:00:00+00'),"
    " (2, 'bia@example.com', '2026-01-02 10:00:00+00', '2026-01-02 10:00:00+00')",
    "INSERT INTO memberships (id, student_id, product_key, state, state_changed_at, created_at, updated_at) VALUES"
    " (10, 1, 'curso', 'active', '2026-01-02 10:00:00+00', '2026-01-02 10:00:00+00', '2026-01-02 10:00:00+00'),"
    " (11, 1, 'combo', 'active', '2026-01-03 10:00:00+00', '2026-01-03 10:00:00+00', '2026-01-03 10:00:00+00')",
    "INSERT INTO classes (id, key, name) VALUES (5, 'curso-2026', 'Curso 2026')",
    "INSERT INTO grants (student_id, membership_id, kind, resource, applied, created_at) VALUES"
    " (1, 11, 'class', 'curso-2026', true, '2026-01-03 10:00:00+00'),"
    " (1, 10, 'class', 'curso-2026', true, '2026-01-02 10:00:00+00'),"
    " (1, 10, 'discord_role', 'curso-2026', true, '2026-01-02 10:00:00+00')",
    # Ana through the ledger; Bia imported without it.
    "INSERT INTO class_enrollments (id, class_id, student_id, created_at) VALUES"
    " (1, 5, 1, '2026-01-02 10:00:01+00'), (2, 5, 2, '2026-01-04 08:30:00+00')",
]


def _rows(url: str, sql: str) -> list[tuple]:
    engine = create_engine(url)
    with engine.connect() as connection:
        rows = [tuple(row) for row in connection.execute(text(sql))]
    engine.dispose()
    return rows


def _execute(url: str, *statements: str) -> None:
    engine = create_engine(url)
    with engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement))
    engine.dispose()


def _columns(url: str) -> set[str]:
    engine = create_engine(url)
    with engine.connect() as connection:
        columns = {column["name"] for column in inspect(connection).get_columns("class_enrollments")}
    engine.dispose()
    return columns


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request, tmp_path) -> Iterator[Settings]:
    if request.param == "sqlite":
        yield Settings(ENGINE_ENV="test", var_dir=tmp_path)
        return
    request.getfixturevalue("postgres_url")
    from tests.conftest import throwaway_database

    with throwaway_database("engine_test_0013") as url:
        yield Settings(ENGINE_ENV="test", database_url=url)


def _stamp_of(value) -> str:
    """A time as either database hands it back (a datetime on PostgreSQL, text on SQLite)."""
    return str(value)[:19].replace("T", " ")


def test_0013_up_keeps_every_enrollment_and_down_drops_only_the_tombstones(settings):
    url = settings.sqlalchemy_url
    upgrade(settings, "0012")
    _execute(url, *SEED)

    upgrade(settings)
    assert _diff(url) == []
    rows = _rows(url, "SELECT id, membership_id, changed_at, removed_at FROM class_enrollments ORDER BY id")
    assert [(r[0], r[1], _stamp_of(r[2]), r[3]) for r in rows] == [
        (1, 10, "2026-01-02 10:00:01", None),  # the oldest granting membership
        (2, None, "2026-01-04 08:30:00", None),  # no grant: no membership
    ]
    # Bia leaves: a tombstone, as the engine now writes it.
    _execute(url, "UPDATE class_enrollments SET removed_at = changed_at WHERE id = 2")

    command.downgrade(alembic_config(settings), "0012")
    assert _columns(url) == {"id", "class_id", "student_id", "created_at"}
    assert _rows(url, "SELECT id, student_id FROM class_enrollments") == [(1, 1)]

    upgrade(settings)  # and up again, to the models' schema
    assert _diff(url) == []
    assert _rows(url, "SELECT id, membership_id, removed_at FROM class_enrollments") == [(1, 10, None)]
