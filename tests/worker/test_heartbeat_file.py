"""The heartbeat files of the compose healthchecks (`engine heartbeat NAME`)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from click.testing import CliRunner

from engine.cli import main
from engine.pipeline.sweep import SweepLoop
from engine.worker.heartbeat_file import age, beat
from tests.conftest import wait_until


def heartbeat(tmp_path: Path, *args: str):
    return CliRunner().invoke(main, ["heartbeat", *args], env={"VAR_DIR": str(tmp_path), "ENGINE_ENV": "production"})


def test_heartbeat_command_is_healthy_only_while_the_file_is_fresh(tmp_path):
    missing = heartbeat(tmp_path, "worker")
    assert missing.exit_code == 1
    assert missing.stderr.startswith("error: no heartbeat yet at ") and "heartbeat/worker" in missing.stderr
    beat(tmp_path, "worker")
    fresh = heartbeat(tmp_path, "worker")
    assert fresh.exit_code == 0, fresh.output
    assert fresh.stdout.startswith("worker alive: heartbeat ")
    old = time.time() - 200
    os.utime(tmp_path / "heartbeat" / "worker", (old, old))
    stale = heartbeat(tmp_path, "worker")  # default limit: 3 x TIMER_POLL_SECONDS (30) = 90 s
    assert stale.exit_code == 1 and "worker heartbeat is 200s old (more than 90s)" in stale.stderr
    assert heartbeat(tmp_path, "worker", "--max-age", "300").exit_code == 0
    assert heartbeat(tmp_path, "bot").exit_code == 1  # each process has its own


def test_the_sweep_loop_beats_only_after_a_sweep_that_worked(tmp_path):
    outcomes = iter([RuntimeError("database down"), None, None])
    swept = threading.Event()

    def run(_rt):
        outcome = next(outcomes, None)
        if isinstance(outcome, Exception):
            raise outcome
        swept.set()

    beats: list[float] = []
    loop = SweepLoop(lambda: None, 0.02, run=run, on_success=lambda: (beats.append(1), beat(tmp_path, "worker")))
    loop.start()
    assert swept.wait(5)
    wait_until(lambda: beats, timeout=5, what="the beat after the sweep that worked")  # on_success follows run()
    loop.stop()
    assert beats and age(tmp_path, "worker") < 5
