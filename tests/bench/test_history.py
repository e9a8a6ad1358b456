"""bench/history.py still fills a database the engine's current schema and rules accept: the soak's
``--history`` depends on it, and nothing else runs it."""

from __future__ import annotations

import psycopg
import pytest

from engine.db.migrate import upgrade
from engine.settings import Settings
from tests.conftest import throwaway_database

pytestmark = pytest.mark.integration


def test_a_small_course_history_fills_a_migrated_database():
    from bench import history

    with throwaway_database("engine_test_history") as url:
        upgrade(Settings(ENGINE_ENV="test", database_url=url))
        counts = history.fill(url, students=12, days=60, seed=3)
        with psycopg.connect(url) as conn:
            events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
            sources = {row[0] for row in conn.execute("SELECT DISTINCT source FROM events")}
            products = conn.execute(
                "SELECT count(DISTINCT product_key) FROM memberships WHERE product_key IS NOT NULL"
            ).fetchone()[0]
    assert events > 12 and counts["events"] == events
    assert "hotmart" in sources
    assert products >= 1
