"""`engine ARGS` run inside the test's process, as a separate process would see it.

A new `engine` process spends about a second of CPU importing before it does anything; the
end-to-end stories call the command dozens of times, so they run it here through click's
CliRunner: the same code, exit code, stdout and stderr, with the environment the process would
have (variables missing from ``env`` are unset) and none of this process's cached settings,
runtime or queue carried into the command or out of it. What only a real process shows (no
traceback on stderr, the entry point itself) keeps its own subprocess tests.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Iterator, Mapping
from contextlib import chdir, contextmanager
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

from tests.conftest import REPO


@dataclass(frozen=True)
class Ran:
    """What ``subprocess.run(..., capture_output=True, text=True)`` would return."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        """Both streams, for a failure message."""
        return self.stdout + self.stderr


def run_engine(env: Mapping[str, str], *args: str, cwd: Path = REPO) -> Ran:
    from engine.cli import main

    overlay: dict[str, str | None] = {name: None for name in os.environ if name not in env}
    overlay.update(env)
    with _fresh_process_state(), chdir(cwd):
        result = CliRunner(env=overlay).invoke(main, list(args), prog_name="engine")
    stderr = result.stderr
    code = result.exit_code
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        # An uncaught exception: the interpreter would print it and exit 1.
        stderr += "".join(traceback.format_exception(result.exception))
        code = 1
    return Ran(code, result.stdout, stderr)


@contextmanager
def _fresh_process_state() -> Iterator[None]:
    """No settings, runtime or queue from before the command, and none left after it."""
    import engine.worker.tasks as queue
    from engine.settings import get_settings

    saved = (queue._runtime, queue._queue)
    queue._runtime = queue._queue = None
    get_settings.cache_clear()
    try:
        yield
    finally:
        if queue._queue is not None:  # the runtime's pool is the process's, shared by URL: kept
            for huey in (queue._queue.huey, *(lane for lane, _ in queue._queue.lanes.values())):
                huey.storage.close()
        queue._runtime, queue._queue = saved
        get_settings.cache_clear()
