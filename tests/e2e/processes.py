"""Start `engine serve` and `engine worker` processes for the stories without paying for their
imports each time.

A real `engine` process spends about two seconds of CPU importing SQLAlchemy, FastAPI, pydantic,
Huey and the engine before it reads a setting, and the stories start about forty of them. Here
each one is forked from multiprocessing's forkserver, which imported those modules once (and
nothing else: it holds no settings, connection, thread or rules). The child takes the
environment, working directory and log file it is given and runs the same click command as the
`engine` console script. It is still a process of its own: its own memory, connections, signal
handlers and exit code; SIGTERM and SIGKILL reach it as they would reach `engine`.

The console script itself, exec'd for real, keeps its own tests (tests/e2e/test_embedded.py,
tests/worker/test_consumer.py, tests/api/test_health.py, tests/engine/test_cli_errors.py)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

# What `engine serve --no-worker` and `engine worker` import before they do anything; importing
# them builds nothing (no settings are read, no queue, runtime or app is made).
PRELOAD = [
    "engine.cli",
    "engine.cli.service",
    "engine.api.main",
    "engine.api.app",
    "engine.worker",
    "engine.db.migrate",
    "engine.pipeline.alerts",
    "engine.pipeline.attention",
    "engine.pipeline.worker_heartbeat",
    "engine.pipeline.sweep",
    "engine.worker.heartbeat_file",
    "connectors.discord",
    "connectors.manychat",
    "connectors.throttle",
    "jsonschema",
    "httpcore",
    "h11",
    "psycopg",
    "anyio._backends._asyncio",
    "uvicorn.config",
    "uvicorn.server",
    "uvicorn.lifespan.on",
    "uvicorn.loops.auto",
    "uvicorn.loops.uvloop",
    "uvicorn.protocols.http.auto",
    "uvicorn.protocols.http.httptools_impl",
]

_context = multiprocessing.get_context("forkserver")
_context.set_forkserver_preload(PRELOAD)


def _run_engine(args: list[str], env: dict[str, str], cwd: str, log: str) -> None:
    """The child: the console script's environment, then its command (exits with its code)."""
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    sys.argv = ["engine", *args]
    from engine.cli import main

    main(args, prog_name="engine")


class EngineProcess:
    """The part of subprocess.Popen the tests use."""

    def __init__(self, process: multiprocessing.process.BaseProcess, args: list[str], log: Path) -> None:
        self._process = process
        self.args = ["engine", *args]
        self.log = log

    def wait_for_output(self, text: str, timeout: float = 30) -> None:
        """Until ``text`` is in the log; fails (with the log) if the process ends or time runs out."""
        deadline = time.monotonic() + timeout
        while text not in self.log.read_text():
            assert self.poll() is None, f"{self.args} exited {self.poll()}:\n{self.log.read_text()}"
            assert time.monotonic() < deadline, f"no {text!r} in {timeout} s:\n{self.log.read_text()}"
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self._process.exitcode

    def send_signal(self, sig: int) -> None:
        if self._process.exitcode is None:
            os.kill(self._process.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def start_engine(args: list[str], *, env: dict[str, str], cwd: Path, log: Path) -> EngineProcess:
    """`engine ARGS` with this environment, in ``cwd``, its stdout and stderr appended to ``log``."""
    log.touch()  # readable as soon as this returns, as a log a parent opens for its child
    # daemon: a process a failed test leaves behind dies with the test run instead of holding it.
    process = _context.Process(target=_run_engine, args=(list(args), dict(env), str(cwd), str(log)), daemon=True)
    process.start()
    return EngineProcess(process, list(args), log)
