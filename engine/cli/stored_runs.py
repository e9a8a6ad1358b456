"""What the commands of stored runs share (``engine reconcile``, ``engine sync hotmart``): the
runtime they run in, the mode their flags ask for, ``--last``, and the exit when the guard holds a run."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

import click

EXIT_HELD = 3  # the blast-radius guard held the run: nothing was applied

LAST_OPTION = click.option("--last", is_flag=True, help="Show the last stored run instead of running one.")


def worker_runtime():
    """The settings' runtime, queuing on the worker's queue (what the run applies, the worker runs)."""
    import engine.worker
    from engine.pipeline.runtime import build_runtime
    from engine.settings import get_settings

    return build_runtime(get_settings(), queue=engine.worker.task_queue())


def run_mode(apply_: bool, grants_only: bool) -> str:
    """report (no --apply), grants (--apply --grants-only) or all (--apply)."""
    return "report" if not apply_ else "grants" if grants_only else "all"


def show_last(run: dict[str, Any] | None, *, none_yet: str, as_json: bool, text: Callable[[dict], str]) -> None:
    """``--last``: the newest stored run as one JSON object or as ``text`` has it; exit 1 with
    ``none_yet`` when there is none."""
    if run is None:
        click.echo(none_yet)
        sys.exit(1)
    click.echo(json.dumps(run, ensure_ascii=False, default=str) if as_json else text(run))


def exit_held(held: Iterable[str]) -> NoReturn:
    """The guard held the run: each ``held`` line (what it would have done) on stderr, then exit 3."""
    for line in held:
        click.echo(line, err=True)
    sys.exit(EXIT_HELD)
