"""A stored run, reconcile's (``reconcile_runs``) and the sync's (``sync_runs``) alike: a row while
it runs, the error when it fails, its report and what it applied when it ends; listed newest first.

What a run reads, compares and applies is its package's (:mod:`engine.reconcile.runs`,
:mod:`engine.catchup.runs`); the row's life around it is this module's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session, sessionmaker

from engine.db.models import ReconcileRun, SyncRun

Run = TypeVar("Run", ReconcileRun, SyncRun)

ERROR_LENGTH = 4000  # of a failed run's error, kept in its row
# Several workers share a schedule: a scheduled run this soon after another is the same run again.
SCHEDULE_GAP = timedelta(minutes=30)


class Outcome(Protocol):
    """What a run applied, or held (reconcile's ``Applied``, the sync's ``Stored``)."""

    @property
    def held(self) -> bool: ...

    def to_dict(self) -> dict[str, Any]: ...


@contextmanager
def recorded(
    sessions: sessionmaker[Session], model: type[Run], now: Callable[[], datetime], **columns: Any
) -> Iterator[int]:
    """A run's row, added as running with ``columns`` (its trigger, mode, start...); yields its id.
    When the block raises, the row is marked failed with the error, and the error goes on."""
    with sessions.begin() as session:
        run = model(status="running", **columns)
        session.add(run)
        session.flush()
        run_id = run.id
    try:
        yield run_id
    except Exception as exc:
        with sessions.begin() as session:
            run = session.get(model, run_id)
            run.status, run.error, run.finished_at = "failed", f"{type(exc).__name__}: {exc}"[:ERROR_LENGTH], now()
        raise


def finish(
    sessions: sessionmaker[Session],
    model: type[Run],
    run_id: int,
    now: Callable[[], datetime],
    outcome: Outcome | None,
    **columns: Any,
) -> None:
    """A run's row at its end: ``columns`` (its report), what it applied (``outcome``; None: it only
    reported) and its status: held by the guard, applied, or reported."""
    with sessions.begin() as session:
        run = session.get(model, run_id)
        for name, value in columns.items():
            setattr(run, name, value)
        run.applied = outcome.to_dict() if outcome else None
        run.status = "held" if outcome and outcome.held else "applied" if outcome else "reported"
        run.finished_at = now()


def newest_first(
    session: Session, model: type[Run], *criteria: ColumnElement[bool], limit: int, offset: int
) -> tuple[list[Run], int]:
    """A page of the runs ``criteria`` select (all without), newest first, and how many there are."""
    total = session.scalar(select(func.count()).select_from(model).where(*criteria)) or 0
    rows = session.scalars(select(model).where(*criteria).order_by(model.id.desc()).limit(limit).offset(offset))
    return list(rows), total


def scheduled_lately(session: Session, model: type[Run], now: datetime, *criteria: ColumnElement[bool]) -> bool:
    """Did a scheduled run (of those ``criteria`` select) start less than :data:`SCHEDULE_GAP` ago?"""
    since = now - SCHEDULE_GAP
    count = select(func.count()).select_from(model).where(model.trigger == "schedule", model.started_at > since)
    return bool(session.scalar(count.where(*criteria)))
