"""Migration 0018: a change key is unique among the sync's events only; two webhooks of one change are
both kept. Down to 0017 and up again on SQLite and PostgreSQL, the events kept."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import create_engine, exc, text

from engine.db.migrate import alembic_config, upgrade
from engine.settings import Settings
from tests.engine.test_migrations import _diff

INSERT = (
    "INSERT INTO events (source, origin, type, dedupe_key, change_key, status, correlation_id, received_at, failures) "
    "VALUES ('hotmart', :origin, 'PURCHASE_REFUNDED', :dedupe, 'hotmart:HP1:PURCHASE_REFUNDED:ana@example.com', "
    "'processed', 'c', CURRENT_TIMESTAMP, 0)"
)


def _store(url: str, dedupe: str, origin: str | None) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text(INSERT), {"dedupe": dedupe, "origin": origin})
    finally:
        engine.dispose()


def _keys(url: str) -> list[tuple[str, str | None]]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT dedupe_key, change_key FROM events ORDER BY id"))
            return [tuple(row) for row in rows]
    finally:
        engine.dispose()


def _down_and_up(settings: Settings) -> None:
    url = settings.sqlalchemy_url
    upgrade(settings)
    _store(url, "hotmart:first", None)
    _store(url, "hotmart:second", None)  # the same change by webhook again: kept
    _store(url, "hotmart-api:one", "hotmart-api")  # the sync's event of it: its index allows one
    with pytest.raises(exc.IntegrityError):
        _store(url, "hotmart-api:two", "hotmart-api")
    command.downgrade(alembic_config(settings), "0017")
    key = "hotmart:HP1:PURCHASE_REFUNDED:ana@example.com"
    # 0017's key is unique over every event: the first keeps it.
    assert _keys(url) == [("hotmart:first", key), ("hotmart:second", None), ("hotmart-api:one", None)]
    upgrade(settings)
    assert _diff(url) == []


def test_0018_down_and_up_on_sqlite(tmp_path):
    _down_and_up(Settings(ENGINE_ENV="test", var_dir=tmp_path))


@pytest.mark.slow
def test_0018_down_and_up_on_postgresql(postgres_url):
    from tests.conftest import throwaway_database

    with throwaway_database("engine_test_0018") as url:
        _down_and_up(Settings(ENGINE_ENV="test", database_url=url))
