"""`engine doctor`, our side: secrets, migrations, an unanswering database, rules, queue, workers."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.rules.files import rules_version
from tests.conftest import RULES
from tests.doctor.conftest import World, doctor, lines, worker_beats


def test_flags_off_checks_only_our_side_and_says_so(world: World):
    result = doctor()
    assert result.exit_code == 0, result.stdout
    assert not [line for line in result.stdout.splitlines() if " discord " in line or " manychat " in line]
    assert "(not checked: Discord, ManyChat" in result.stdout


def test_our_side_development_secrets_and_pending_migrations(world: World, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HOTMART_HOTTOK", "dev-hottok")
    monkeypatch.setenv("ADMIN_API_TOKEN", "short")
    monkeypatch.setenv("DATABASE_URL", "sqlite://")  # an empty in-memory database: no migration applied
    result = doctor()
    assert result.exit_code == 1
    assert "FAIL  engine    HOTMART_HOTTOK is a development value: generate a new one" in result.stdout
    assert "warn  engine    ADMIN_API_TOKEN is short (5 characters): use 16 or more" in result.stdout
    assert "FAIL  engine    migrations at none, newest is " in result.stdout


def test_the_course_api_token_is_checked_once_set():
    from engine.doctor.core import secret_checks
    from engine.settings import Settings

    production = {"ENGINE_ENV": "production", "hotmart_hottok": "h" * 32, "admin_api_token": "a" * 32}
    unset = [check.message for check in secret_checks(Settings(**production, _env_file=None))]
    assert not any("COURSE_API_TOKEN" in message for message in unset)  # unset: the read API is closed
    short = secret_checks(Settings(**production, course_api_token="c" * 9, _env_file=None))
    assert ("warn", "COURSE_API_TOKEN is short (9 characters): use 16 or more") in {
        (check.status, check.message) for check in short
    }
    dev = secret_checks(Settings(**production, course_api_token="change-me", _env_file=None))
    assert ("FAIL", "COURSE_API_TOKEN is a development value: generate a new one") in {
        (check.status, check.message) for check in dev
    }


def test_a_database_that_accepts_connections_and_never_answers_fails_the_preflight(
    world: World, monkeypatch: pytest.MonkeyPatch
):
    """The database checks share one connection opened with a short timeout: a server that takes
    the TCP connection and never speaks is one FAIL line, not a preflight that waits forever."""
    import socket
    import threading

    silent = socket.create_server(("127.0.0.1", 0))  # listens (the kernel accepts) and never answers
    monkeypatch.setenv("DATABASE_URL", f"postgresql://doctor@127.0.0.1:{silent.getsockname()[1]}/silent")
    outcome = []
    run = threading.Thread(target=lambda: outcome.append(doctor()), daemon=True)
    try:
        run.start()
        run.join(timeout=60)  # the connect timeout is 3 s; without it libpq waits for ever
    finally:
        silent.close()
    assert outcome, "engine doctor did not finish"
    result = outcome[0]
    assert result.exit_code == 1
    assert lines(result, "FAIL") == ["FAIL  engine    database unreachable (OperationalError): check DATABASE_URL"]
    assert "queue reachable (Redis)" in result.stdout  # the other checks still ran


def test_invalid_rules_and_an_unreachable_queue(world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    (tmp_path / "lifecycle.yaml").write_text("lifecycle: {}\n")
    monkeypatch.setenv("RULES_DIR", str(tmp_path))
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    result = doctor()
    assert result.exit_code == 1
    fails = lines(result, "FAIL")
    assert fails[0] == "FAIL  engine    queue unreachable (ConnectionError): check REDIS_URL"
    assert fails[1].startswith(f"FAIL  engine    rules in {tmp_path} are invalid (")
    assert fails[1].endswith(": run engine check")


def test_a_worker_on_other_rules_and_no_worker_at_all_are_warned(world: World, pg: str):
    ok = doctor()
    assert f"ok    engine    1 worker(s) run the rules on disk ({rules_version(RULES)})" in ok.stdout.splitlines()

    worker_beats(pg, "0123456789ab@oldcommit", name="worker:doctor-test")
    behind = doctor()
    assert behind.exit_code == 0  # a warning: the worker reloads by itself
    assert lines(behind, "warn") == [
        f"warn  engine    1 of 1 worker(s) run other rules than {rules_version(RULES)} "
        "(e.g. worker:doctor-test: 0123456789ab@oldcommit): they reload within RULES_RELOAD_SECONDS; "
        "if it persists, see /healthz for the load error"
    ]


def test_no_fresh_worker_heartbeat_is_warned(world: World, pg: str):
    from sqlalchemy import text

    from engine.db.session import session_factory
    from engine.settings import Settings

    with session_factory(Settings(ENGINE_ENV="test", database_url=pg)).begin() as session:
        session.execute(text("DELETE FROM heartbeats"))
    result = doctor()
    assert "warn  engine    no running worker (no fresh heartbeat): start `engine worker`" in result.stdout
