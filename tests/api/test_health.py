"""/healthz and `engine healthcheck` are honest (issue 10, outcome 7): the database must accept
writes, the worker must have beaten recently. On the real PostgreSQL."""

from __future__ import annotations

import os
import subprocess
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy.orm import sessionmaker

from engine.api.app import create_app
from engine.db.models import utcnow
from engine.pipeline.worker_heartbeat import HeartbeatThread, beat, worker_name
from tests.cli import run_engine
from tests.conftest import REPO, RULES
from tests.e2e.conftest import ENGINE


def test_healthz_is_degraded_while_the_database_is_read_only(make_harness):
    from sqlalchemy import create_engine

    harness = make_harness()
    url = harness.runtime.settings.sqlalchemy_url
    read_only = create_engine(url, connect_args={"options": "-c default_transaction_read_only=on"})
    try:
        healthy = TestClient(create_app(harness.runtime)).get("/healthz")
        assert (healthy.status_code, healthy.json()["database"]) == (200, "ok")
        harness.runtime.sessions = sessionmaker(read_only)
        response = TestClient(create_app(harness.runtime)).get("/healthz")
        assert response.status_code == 503
        assert response.json()["status"] == "degraded" and response.json()["database"].startswith("error")
    finally:
        read_only.dispose()


def test_healthz_reports_the_worker_heartbeat_age(make_harness):
    harness = make_harness(worker_stale_seconds=60, heartbeat_seconds=10)
    client = TestClient(create_app(harness.runtime, worker_check=True))
    missing = client.get("/healthz")
    # Reported, but the API still takes webhooks (stored until a worker runs): not a 503.
    assert (missing.status_code, missing.json()["status"]) == (200, "degraded")
    assert missing.json()["worker"] == "error: no worker heartbeat yet"
    with harness.runtime.sessions.begin() as session:
        beat(session, worker_name("old-host"), started_at=utcnow(), now=utcnow() - timedelta(minutes=5))
    stale = client.get("/healthz")
    assert stale.json()["status"] == "degraded"
    assert stale.json()["worker"].startswith("error: last worker heartbeat 30")
    thread = HeartbeatThread(harness.runtime.sessions, interval=10, name=worker_name("live-host"))
    assert thread.beat_once()
    fresh = client.get("/healthz")
    assert fresh.status_code == 200
    assert {key: fresh.json()[key] for key in ("status", "database", "worker")} == {
        "status": "ok",
        "database": "ok",
        "worker": "ok",
    }


def _environment(pg: str, **env: str) -> dict[str, str]:
    return {**os.environ, "ENGINE_ENV": "test", "DATABASE_URL": pg, "RULES_DIR": str(RULES), **env}


def test_engine_healthcheck_cli(make_harness, pg, redis_url):
    harness = make_harness()
    assert run_engine(_environment(pg, REDIS_URL=redis_url), "healthcheck").returncode == 0
    missing = run_engine(_environment(pg), "healthcheck", "--worker")
    assert missing.returncode == 1 and "no worker heartbeat" in missing.stderr
    with harness.runtime.sessions.begin() as session:
        beat(session, worker_name(), started_at=utcnow())  # this host's worker
    # What the compose healthcheck runs: the installed command, in a process of its own.
    alive = subprocess.run(
        [ENGINE, "healthcheck", "--worker"], env=_environment(pg), cwd=REPO, capture_output=True, timeout=60
    )
    assert alive.returncode == 0, alive.stderr


def test_a_worker_heartbeat_carries_the_rules_version_it_runs(make_harness):
    from engine.db.models import Heartbeat

    harness = make_harness()
    versions = iter(["aaaaaaaaaaaa", "bbbbbbbbbbbb"])
    thread = HeartbeatThread(
        harness.runtime.sessions, interval=10, name=worker_name("versioned"), rules_version=lambda: next(versions)
    )
    assert thread.beat_once()
    with harness.runtime.sessions() as session:
        assert session.get(Heartbeat, worker_name("versioned")).rules_version == "aaaaaaaaaaaa"
    assert thread.beat_once()  # a reload since: the next beat says so
    with harness.runtime.sessions() as session:
        assert session.get(Heartbeat, worker_name("versioned")).rules_version == "bbbbbbbbbbbb"
