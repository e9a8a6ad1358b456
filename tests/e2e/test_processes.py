"""The forked `engine` processes the stories start: the console script's command, exit code and
output, with the environment and working directory they are given, and the stop signals."""

from __future__ import annotations

import os
import signal
import time

from tests.conftest import ADMIN_TOKEN, HOTTOK, REPO, RULES
from tests.e2e.processes import start_engine


def _env(**extra: str) -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "ENGINE_ENV": "development", **extra}


def test_the_command_runs_with_its_exit_code_and_output_in_the_log(tmp_path):
    log = tmp_path / "engine.log"
    assert start_engine(["--version"], env=_env(), cwd=REPO, log=log).wait(timeout=30) == 0
    assert log.read_text().startswith("engine, version ")

    assert start_engine(["no-such-command"], env=_env(), cwd=REPO, log=log).wait(timeout=30) == 2
    assert "No such command 'no-such-command'" in log.read_text()  # appended


def test_the_child_has_the_given_environment_and_working_directory(tmp_path):
    log = tmp_path / "check.log"
    missing = tmp_path / "nowhere"
    assert start_engine(["check"], env=_env(RULES_DIR=str(missing)), cwd=REPO, log=log).wait(timeout=30) == 1
    assert f"{missing}:1: rules directory not found" in log.read_text()

    # No RULES_DIR at all: `rules/` of the working directory.
    (tmp_path / "rules").symlink_to(RULES)
    assert start_engine(["check"], env=_env(), cwd=tmp_path, log=log).wait(timeout=30) == 0


def test_stop_signals_reach_its_handlers(tmp_path, pg, redis_url):
    """SIGTERM: the worker's own graceful stop (exit 0), as for `engine worker`; SIGKILL: -9."""
    env = _env(
        ENGINE_ENV="production",
        DATABASE_URL=pg,
        REDIS_URL=redis_url,
        QUEUE_NAME=os.environ["QUEUE_NAME"],
        HOTMART_HOTTOK=HOTTOK,
        ADMIN_API_TOKEN=ADMIN_TOKEN,
        RULES_DIR=str(RULES),
    )
    for stop, code in ((signal.SIGTERM, 0), (signal.SIGKILL, -signal.SIGKILL)):
        log = tmp_path / f"worker-{stop.name}.log"
        worker = start_engine(["worker", "--threads", "1"], env=env, cwd=REPO, log=log)
        # The main consumer (1 thread; the ManyChat lane's has 8) logs this just before it installs
        # its handlers, whose graceful stop logs "All workers have stopped."
        worker.wait_for_output("Huey consumer started with 1 thread")
        time.sleep(0.5)
        worker.send_signal(stop)
        assert worker.wait(timeout=15) == code, log.read_text()
    assert "All workers have stopped." in (tmp_path / "worker-SIGTERM.log").read_text()
