"""The embedded default (`make run`, README and docs/getting-started.md): no DATABASE_URL, no REDIS_URL — SQLite files
under VAR_DIR for the data and the queue, an in-process worker, migrations applied at start."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN, HOTTOK, REFERENCE, REPO, RULES
from tests.e2e.conftest import ENGINE, Stack
from tests.fakes.server import free_port


def _embedded_env(tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_", "DISCORD_", "MANYCHAT_"))}
    env.update(
        {
            "ENGINE_ENV": "development",
            "VAR_DIR": str(tmp_path / "var"),
            "RULES_DIR": str(RULES),
            "HOTMART_HOTTOK": HOTTOK,
            "ADMIN_API_TOKEN": ADMIN_TOKEN,
            "LOG_FORMAT": "json",
        }
    )
    return env


@pytest.mark.slow
def test_serve_on_sqlite_takes_a_webhook_and_processes_it(tmp_path):
    port = free_port()
    env = _embedded_env(tmp_path)
    log = (tmp_path / "serve.log").open("w")
    process = subprocess.Popen(
        [ENGINE, "serve", "--port", str(port), "--access-log"], env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        stack = Stack(f"http://127.0.0.1:{port}", env, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10))

        def healthy() -> bool:
            try:
                health = stack.client.get("/healthz").json()
                checks = {key: health.get(key) for key in ("status", "database", "queue", "worker", "rules_error")}
                return checks == {"status": "ok", "database": "ok", "queue": "ok", "worker": "ok", "rules_error": None}
            except (httpx.HTTPError, ValueError):
                return False

        # An exec'd `engine serve` spends about 3 s of CPU before it answers (imports, the migrations
        # on a new SQLite file, the rules), twelve times what a forked stack process spends (whose
        # deadline is 30 s): 60 s, as for the same start in the stop-signal test below.
        stack.wait_for(healthy, timeout=60, what="the embedded service")
        response = stack.post_webhook((REFERENCE / "purchase_approved.json").read_bytes())
        assert response.json()["status"] == "accepted"
        event = stack.wait_event(response.json()["event_id"])
        assert event["status"] == "processed"
        actions = {step["action"]: step["status"] for step in event["steps"]}
        # Connectors are off by default: their steps are skipped, never done; local steps are done.
        assert actions["add_tag"] == "skipped" and actions["trigger_flow"] == "skipped"
        assert actions["issue_token"] == "done" and actions["schedule"] == "done"
        assert stack.post_webhook((REFERENCE / "purchase_approved.json").read_bytes()).json() == {"status": "duplicate"}
        stack.client.close()
    finally:
        process.terminate()
        process.wait(timeout=15)
        log.close()
    assert process.returncode == 0
    assert (tmp_path / "var" / "queue.db").exists()
    with sqlite3.connect(tmp_path / "var" / "engine.db") as db:
        assert db.execute("SELECT status FROM events").fetchall() == [("processed",)]
    # LOG_FORMAT=json: every line is one JSON object, uvicorn's access log included; no secret.
    lines = (tmp_path / "serve.log").read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    assert all({"time", "level", "logger", "message"} <= entry.keys() for entry in entries)
    access = [e for e in entries if e["logger"] == "uvicorn.access"]
    assert any("POST /webhooks/hotmart" in e["message"] for e in access)
    assert entries[-1]["message"] == "All workers have stopped."  # the in-process worker, gracefully
    assert not any(HOTTOK in line or ADMIN_TOKEN in line for line in lines)


@pytest.mark.slow
def test_a_stop_signal_while_serve_starts_stops_it(tmp_path):
    """SIGTERM while the in-process worker starts, before uvicorn takes the signals: the process
    stops, exit code 0. Huey's consumer used to take the signal for a loop nobody ran (the server
    then ran on), or, a moment earlier, the signal killed the process outright."""
    import time

    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [ENGINE, "serve", "--port", str(free_port())],
            env=_embedded_env(tmp_path),
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while "Huey consumer started" not in log_path.read_text():
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.01)
        process.terminate()
        assert process.wait(timeout=30) == 0, log_path.read_text()
    finally:
        if process.poll() is None:
            process.kill()
