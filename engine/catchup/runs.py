"""One ``engine sync <source>`` run: read the platform's API since a point, compare it with the
event log, store the run, and (``mode`` grants / all) store the changes found as events.

Where a run starts reading sales (``since``): the caller's, else the start of the last run that
left nothing behind (every change it found stored) minus :data:`MARGIN`, else :data:`FIRST_RUN`
ago. A run that reported, or was held, leaves its findings behind: the next one reads from as far
back again, so a change is never passed over because a run only reported it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from connectors.hotmart_api import HotmartReader
from engine.catchup.alerts import note_in_silence_alert
from engine.catchup.compare import findings
from engine.catchup.known import load_known
from engine.catchup.observe import observe
from engine.catchup.report import Report
from engine.catchup.store import Stored, store_findings
from engine.db import stored_runs
from engine.db.locks import Namespace, one_run_at_a_time
from engine.db.models import Membership, SyncRun
from engine.db.session import engine_of
from engine.pipeline.runtime import Runtime
from engine.reconcile.world import Progress, no_progress
from engine.sources import SOURCES, Source

log = logging.getLogger(__name__)

Mode = Literal["report", "grants", "all"]
# Hotmart keeps 60 days of webhook history: what a first run reads back to.
FIRST_RUN = timedelta(days=60)
# The sales history is searched by order date: a boleto paid days after it was printed is ordered
# before the run that missed its approval. A week covers a boleto's life.
MARGIN = timedelta(days=7)
STORED_ITEMS = 1000  # findings kept in a stored run; counts and totals are always complete
CLEAN = ("reported", "applied")


class Busy(Exception):
    """Another sync is running."""


class NotReadable(ValueError):
    """The source has no API the engine reads."""


def syncable(name: str) -> Source:
    """The source ``name`` whose API the engine reads; :class:`NotReadable` otherwise."""
    source = SOURCES.get(name)
    if source is None or source.api is None:
        readable = ", ".join(n for n, s in SOURCES.items() if s.api is not None)
        raise NotReadable(f"no source {name!r} whose API the engine reads (known: {readable})")
    return source


def compute(
    rt: Runtime, source: Source, reader: HotmartReader, since: datetime, until: datetime, progress: Progress
) -> Report:
    """Read the platform and compare it with the event log. Reads only."""
    rules, planner = rt.rules.rules, rt.rules.planner
    report = Report(source.title, since, until)
    product_ids = sorted({pid for p in rules.products.values() for pid in p.source_ids.get(source.name, ())})
    if not product_ids:
        report.notes.append(f"no product of the rules has a {source.title} id: nothing was read")
        return report
    assert source.api is not None
    observed = observe(source.api, reader, product_ids, since=since, until=until, progress=progress)
    report.read = observed.read
    for kind, count in observed.unreadable.items():
        report.passed_over[f"{kind} item(s) {source.title} sent without what a webhook needs"] += count
    with rt.sessions() as session:
        known = load_known(session, source, observed.changes)
    findings(source, rules, planner, observed, known, report, until)
    return report


def run_sync(
    rt: Runtime,
    reader: HotmartReader,
    *,
    source: str = "hotmart",
    mode: Mode = "report",
    trigger: str = "cli",
    since: datetime | None = None,
    confirm: bool = False,
    confirmed: Collection[str] | None = None,
    max_revokes: int | None = None,
    progress: Progress = no_progress,
) -> tuple[int, Report, Stored | None]:
    """Compute, store the run, and (``mode`` grants / all) store the findings; returns (run id,
    report, what was stored). ``confirmed``: see :func:`engine.catchup.store.store_findings`.
    Raises :class:`Busy` while another sync runs."""
    platform = syncable(source)
    with exclusive(rt):
        now = rt.now()
        if since is None:
            with rt.sessions() as session:
                since = default_since(session, platform.name, now)
        columns = {"source": platform.name, "trigger": trigger, "mode": mode, "started_at": now, "since": since}
        with stored_runs.recorded(rt.sessions, SyncRun, rt.now, **columns) as run_id:
            report = compute(rt, platform, reader, since, now, progress)
            stored = None
            if mode != "report" and not report.empty:
                stored = store_findings(
                    rt,
                    platform,
                    report,
                    students=guarded_students(rt),
                    grants_only=mode == "grants",
                    confirm=confirm,
                    confirmed=confirmed,
                    max_revokes=max_revokes,
                    run_id=run_id,
                )
        stored_runs.finish(
            rt.sessions,
            SyncRun,
            run_id,
            rt.now,
            stored,
            counts=report.counts(),
            report=report.to_dict(limit=STORED_ITEMS),
        )
    log.info("%s sync run %s (%s): %s; stored: %s", platform.title, run_id, mode, report.totals(), stored_brief(stored))
    note_in_silence_alert(rt, platform, run_id, report)
    return run_id, report, stored


def stored_brief(stored: Stored | None) -> dict[str, Any] | None:
    """What a run stored, its events counted rather than listed (the log line, the history)."""
    if stored is None:
        return None
    return {key: value for key, value in stored.to_dict().items() if key != "events"} | {"events": len(stored.events)}


def left_behind(run: SyncRun) -> int:
    """The changes a finished run found and did not store."""
    if run.applied is not None:
        return int(run.applied.get("left") or 0)
    return int(((run.report or {}).get("totals") or {}).get("found") or 0)


def default_since(session: Session, source: str, now: datetime) -> datetime:
    """From the start of the last run that left nothing behind, minus the margin; else 60 days back."""
    runs = session.scalars(
        select(SyncRun).where(SyncRun.source == source, SyncRun.status.in_(CLEAN)).order_by(SyncRun.id.desc()).limit(50)
    )
    for run in runs:
        if left_behind(run) == 0:
            return run.started_at - MARGIN
    return now - FIRST_RUN


def guarded_students(rt: Runtime) -> int:
    """Students with a membership: what the guard's share is of (as reconcile's)."""
    with rt.sessions() as session:
        return session.scalar(select(func.count(func.distinct(Membership.student_id)))) or 0


@contextmanager
def exclusive(rt: Runtime) -> Iterator[None]:
    """One sync at a time (several workers share a schedule; an admin may run one by hand)."""
    with one_run_at_a_time(engine_of(rt.sessions), Namespace.SYNC) as got:
        if not got:
            raise Busy("another sync is running")
        yield


def list_runs(
    session: Session, *, source: str | None = None, limit: int = 20, offset: int = 0
) -> tuple[list[SyncRun], int]:
    of_source = [SyncRun.source == source] if source is not None else []
    return stored_runs.newest_first(session, SyncRun, *of_source, limit=limit, offset=offset)


def run_out(run: SyncRun) -> dict[str, Any]:
    return {
        "id": run.id,
        "source": run.source,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "trigger": run.trigger,
        "mode": run.mode,
        "status": run.status,
        "since": run.since,
        "counts": run.counts or {},
        "report": run.report,
        "applied": run.applied,
        "error": run.error,
    }


def last_run(rt: Runtime, source: str) -> dict[str, Any] | None:
    with rt.sessions() as session:
        runs, _ = list_runs(session, source=source, limit=1)
        return run_out(runs[0]) if runs else None


ReaderFactory = Callable[[Any], HotmartReader]
