"""Heartbeat files for the container healthchecks of the worker and the bot (not the worker's
heartbeat row in the database: engine.pipeline.worker_heartbeat).

A process that is alive *and working* touches ``VAR_DIR/heartbeat/<name>``: the worker after
each sweep (which needs the database), the bot while connected to Discord (or idling on
purpose while Discord is disabled). ``engine heartbeat NAME`` exits 0 while the file is fresh
and 1 otherwise; compose runs it inside the same container.
"""

from __future__ import annotations

import time
from pathlib import Path


def heartbeat_path(var_dir: Path, name: str) -> Path:
    return Path(var_dir) / "heartbeat" / name


def beat(var_dir: Path, name: str) -> None:
    path = heartbeat_path(var_dir, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{time.time():.0f}\n", encoding="ascii")


def age(var_dir: Path, name: str) -> float | None:
    """Seconds since the last beat; None when there never was one."""
    try:
        return max(time.time() - heartbeat_path(var_dir, name).stat().st_mtime, 0.0)
    except FileNotFoundError:
        return None
