"""The backup and restore commands of docs/operations/backups.md, run on the test database: a dump restores whole."""

from __future__ import annotations

import shutil
import subprocess

import psycopg
import pytest

from tests.conftest import load_payload, throwaway_database

TABLES = ("students", "memberships", "events", "action_runs", "grants", "scheduled_events", "alembic_version")


def counts(url: str) -> dict[str, object]:
    with psycopg.connect(url) as conn:
        found = {table: conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0] for table in TABLES}
        found["version"] = conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]
        found["emails"] = conn.execute("SELECT string_agg(email, ',' ORDER BY email) FROM students").fetchone()[0]
    return found


@pytest.mark.slow
def test_pg_dump_then_pg_restore_gives_back_the_same_data(make_harness, pg, tmp_path):
    if not (shutil.which("pg_dump") and shutil.which("pg_restore")):
        pytest.fail("pg_dump and pg_restore are needed (postgresql-client)")
    h = make_harness()
    h.deliver(load_payload("purchase_approved.json"))
    h.deliver(load_payload("purchase_approved_subscription_first.json"))
    before = counts(pg)
    assert before["students"] == 1 and before["events"] == 2 and before["action_runs"] > 0

    dump = tmp_path / "engine.dump"
    # the docs: docker compose exec -T postgres pg_dump -U engine -d engine -Fc > engine-$(date +%F).dump
    with dump.open("wb") as out:
        subprocess.run(["pg_dump", "-Fc", "--dbname", pg], stdout=out, check=True, timeout=60)
    with throwaway_database("engine_restore") as restored_url:
        # the docs: pg_restore --no-owner -d engine_restore_test < engine-DATE.dump
        with dump.open("rb") as source:
            subprocess.run(["pg_restore", "--no-owner", "--dbname", restored_url], stdin=source, check=True, timeout=60)
        assert counts(restored_url) == before
