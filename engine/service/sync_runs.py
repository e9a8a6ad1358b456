"""``engine sync hotmart`` for the admin page: the stored runs, what applying one would store (the
blast-radius guard's view of it), and running a report or an apply as ``engine sync hotmart
[--apply]`` does, written to the history with the operator's name."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from connectors.errors import WireError
from connectors.hotmart_api import HotmartReader
from engine.catchup.runs import (
    Busy,
    guarded_students,
    left_behind,
    list_runs,
    run_out,
    run_sync,
    stored_brief,
    syncable,
)
from engine.catchup.schedule import hotmart_reader
from engine.catchup.store import origin_of
from engine.db.models import SyncRun
from engine.pipeline.runtime import Runtime
from engine.reconcile.apply import revoke_limit
from engine.service import audit
from engine.service.stored_runs import PAGE_TRIGGER, ConfirmationRequired, RunPage, apply_mode, record_apply

SOURCE = "hotmart"  # the one platform whose API the engine reads
EVENTS_SHOWN = 100  # a run's stored events linked on its page; the count says how many there are
EXAMPLES_SHOWN = 100  # the changes found listed on a run's page (the apply's preview names every ending)

ReaderFactory = Callable[[Any], HotmartReader]


class NotRead(Exception):
    """The platform's API could not be read: credentials missing or refused, the API unreachable.
    The text names no secret."""


@dataclass(frozen=True)
class LastSync:
    """The overview's line: the newest run, and what it left unapplied."""

    id: int
    started_at: datetime
    status: str
    left: int


@dataclass(frozen=True)
class SyncPreview:
    """What applying stored run ``run_id`` would store, from its report: every change found (the
    approvals only, with ``grants_only``), the ones that end access named, and whether they exceed
    the guard's ``limit``."""

    run_id: int
    grants_only: bool
    limit: int
    total: int  # the changes it would store
    by_effect: dict[str, int]
    ending: list[dict[str, Any]] = field(default_factory=list)
    ending_total: int = 0
    others: list[dict[str, Any]] = field(default_factory=list)  # the rest it would store, as stored
    notes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.total

    @property
    def over_limit(self) -> bool:
        """Beyond the guard: stored only when the operator confirms having read the endings."""
        return self.ending_total > self.limit

    @property
    def complete(self) -> bool:
        """The stored report names every ending (a run keeps its first 1,000 changes), by the key
        the apply checks them with."""
        return len(self.ending) == self.ending_total and all(item.get("change_key") for item in self.ending)

    def confirmed(self) -> frozenset[str]:
        return frozenset(item["change_key"] for item in self.ending if item.get("change_key"))


def _row(run: SyncRun) -> dict[str, Any]:
    """A stored run with what the list shows: changes found, stored as events, left unapplied."""
    out = run_out(run)
    finished = run.status not in ("running", "failed")
    out["found"] = ((run.report or {}).get("totals") or {}).get("found") if run.report else None
    out["stored"] = len((run.applied or {}).get("events") or [])
    out["left"] = left_behind(run) if finished else None
    return out


def run_page(session: Session, *, limit: int, offset: int) -> RunPage:
    """The stored runs, newest first (``GET /admin/sync/hotmart/runs``'s)."""
    runs, total = list_runs(session, source=SOURCE, limit=limit, offset=offset)
    return RunPage(items=[_row(run) for run in runs], total=total, limit=limit, offset=offset)


def stored_run(session: Session, run_id: int) -> dict[str, Any] | None:
    run = session.get(SyncRun, run_id)
    if run is None or run.source != SOURCE:
        return None
    out = _row(run)
    events = list((run.applied or {}).get("events") or [])
    out["events"], out["events_total"] = events[:EVENTS_SHOWN], len(events)
    out["origin"] = origin_of(syncable(SOURCE))
    report = dict(run.report) if run.report else None
    if report is not None:
        report["findings"] = [_dated(item) for item in report.get("findings") or []]
    out["report"] = report
    out["examples"] = report["findings"][:EXAMPLES_SHOWN] if report else []
    read = ((report or {}).get("read") or {}).values()
    out["read_subscriptions"] = sum(counts.get("subscriptions", 0) for counts in read)
    out["read_sales"] = sum(counts.get("sales", 0) for counts in read)
    return out


def _dated(finding: dict[str, Any]) -> dict[str, Any]:
    """A stored change found, its date a date again (the report keeps it as ISO text)."""
    try:
        occurred_at = datetime.fromisoformat(finding["occurred_at"])
    except (KeyError, TypeError, ValueError):
        occurred_at = None
    return finding | {"occurred_at": occurred_at}


def last_sync(session: Session) -> LastSync | None:
    runs, _ = list_runs(session, source=SOURCE, limit=1)
    if not runs:
        return None
    run = runs[0]
    return LastSync(run.id, run.started_at, run.status, left_behind(run) if run.status != "failed" else 0)


def apply_preview(rt: Runtime, run: dict[str, Any], *, grants_only: bool) -> SyncPreview | None:
    """What applying ``run``'s report would store; None when the run has no report (running, failed)."""
    report = run.get("report")
    if not report or run["status"] in ("running", "failed"):
        return None
    findings = list(report.get("findings") or [])
    totals = report.get("totals") or {}
    if grants_only:
        granting = syncable(SOURCE).granting_events
        findings = [item for item in findings if item.get("event_type") in granting]
        counts = (run.get("counts") or {}).values()
        total = sum(n for by_type in counts for kind, n in by_type.items() if kind in granting)
        by_effect = dict(Counter(item.get("effect") for item in findings))
        ending_total = by_effect.get("ends", 0)
    else:
        total = int(totals.get("found") or 0)
        by_effect = {effect: int(n) for effect, n in totals.items() if effect != "found" and n}
        ending_total = int(totals.get("ends") or 0)
    return SyncPreview(
        run_id=run["id"],
        grants_only=grants_only,
        limit=revoke_limit(guarded_students(rt)),
        total=total,
        by_effect=by_effect,
        ending=[item for item in findings if item.get("effect") == "ends"],
        ending_total=ending_total,
        others=[item for item in findings if item.get("effect") != "ends"],
        notes=list(report.get("notes") or []),
    )


def _read(rt: Runtime, reader_factory: ReaderFactory, **options: Any):
    """``run_sync`` with a reader the settings describe (closed after), its wire errors as :class:`NotRead`."""
    if missing := rt.settings.missing_hotmart_credentials():
        raise NotRead(f"{', '.join(missing)} not set: the credentials of Hotmart's API")
    reader = reader_factory(rt.settings)
    try:
        return run_sync(rt, reader, source=SOURCE, trigger=PAGE_TRIGGER, **options)
    except WireError as exc:  # its text names no secret (connectors/hotmart_wire.py scrubs them)
        raise NotRead(f"{exc.error}: {exc.detail}") from None
    finally:
        close = getattr(reader, "close", None)
        if close is not None:
            close()


def report_now(rt: Runtime, *, operator: str, note: str | None, reader_factory: ReaderFactory = hotmart_reader) -> int:
    """``engine sync hotmart``: read Hotmart, compare and store a report, change nothing; the run's
    id. Raises :class:`Busy` while another sync runs, :class:`NotRead` when Hotmart was not read."""
    run_id, report, _ = _read(rt, reader_factory, mode="report")
    with rt.sessions() as session:
        audit.record(
            session, operator, "sync_reported", at=rt.now(), note=note, detail={"run_id": run_id, **report.totals()}
        )
    return run_id


def apply_reviewed(
    rt: Runtime,
    preview: SyncPreview,
    *,
    confirm: bool,
    operator: str,
    note: str | None,
    reader_factory: ReaderFactory = hotmart_reader,
) -> int:
    """``engine sync hotmart --apply [--grants-only] [--confirm]`` after the operator read
    ``preview``: reads Hotmart again, stores the run and stores what it finds under the guard; the
    new run's id.

    ``confirm`` covers the endings the preview named, no other (one found since is held). Raises
    :class:`ConfirmationRequired` when the preview is over the guard and ``confirm`` is not given
    (nothing runs), :class:`Busy` while another sync runs, :class:`NotRead`."""
    if preview.over_limit and not confirm:
        raise ConfirmationRequired(f"{preview.ending_total} changes that end access, more than {preview.limit}")
    confirmed = preview.confirmed() if confirm else None
    run_id, _, stored = _read(rt, reader_factory, mode=apply_mode(preview), confirm=confirm, confirmed=confirmed)
    brief = stored_brief(stored)
    record_apply(
        rt, "sync_applied", preview, run_id=run_id, confirm=confirm, operator=operator, note=note, applied=brief
    )
    return run_id


__all__ = [
    "Busy",
    "ConfirmationRequired",
    "LastSync",
    "NotRead",
    "SyncPreview",
    "apply_preview",
    "apply_reviewed",
    "last_sync",
    "report_now",
    "run_page",
    "stored_run",
]
