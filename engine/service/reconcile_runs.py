"""Reconcile for the admin page: the stored runs, what applying one would do (the blast-radius
guard's view of it), and running a report or an apply as ``engine reconcile [--apply]`` does,
written to the history with the operator's name."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from engine.db.models import ReconcileRun
from engine.pipeline.runtime import Runtime
from engine.reconcile.apply import revoke_limit
from engine.reconcile.diff import ChangeKey, change_key
from engine.reconcile.runs import Busy, list_runs, run_out, run_reconcile
from engine.service import audit
from engine.service.stored_runs import PAGE_TRIGGER, ConfirmationRequired, RunPage, apply_mode, record_apply


@dataclass(frozen=True)
class ApplyPreview:
    """What applying stored run ``run_id`` would do, from its report: the grants, the revocations
    (none with ``grants_only``) and whether they exceed the guard's ``limit``."""

    run_id: int
    grants_only: bool
    limit: int
    grants: list[dict[str, Any]] = field(default_factory=list)
    grants_total: int = 0
    revokes: list[dict[str, Any]] = field(default_factory=list)
    revokes_total: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.grants_total or self.revokes_total)

    @property
    def over_limit(self) -> bool:
        """Beyond the guard: applied only when the operator confirms having read the revocations."""
        return self.revokes_total > self.limit

    @property
    def complete(self) -> bool:
        """The stored list names every revocation (a run keeps the first 1,000 of each list)."""
        return len(self.revokes) == self.revokes_total

    def confirmed(self) -> frozenset[ChangeKey]:
        return frozenset(change_key(item) for item in self.revokes)


def run_page(session: Session, *, limit: int, offset: int) -> RunPage:
    """The stored runs, newest first (``GET /admin/reconcile/runs``'s)."""
    runs, total = list_runs(session, limit=limit, offset=offset)
    return RunPage(items=[run_out(run) for run in runs], total=total, limit=limit, offset=offset)


def stored_run(session: Session, run_id: int) -> dict[str, Any] | None:
    run = session.get(ReconcileRun, run_id)
    return run_out(run) if run is not None else None


def apply_preview(rt: Runtime, run: dict[str, Any], *, grants_only: bool) -> ApplyPreview | None:
    """What applying ``run``'s report would do; None when the run has no report (running, failed)."""
    diff = run.get("diff")
    if not diff:
        return None
    totals = diff.get("totals") or {}
    return ApplyPreview(
        run_id=run["id"],
        grants_only=grants_only,
        limit=revoke_limit(int(diff.get("students") or 0), rt.settings.reconcile_max_revokes),
        grants=list(diff.get("missing") or []),
        grants_total=int(totals.get("missing") or 0),
        revokes=[] if grants_only else list(diff.get("extra") or []),
        revokes_total=0 if grants_only else int(totals.get("extra") or 0),
        notes=list(diff.get("notes") or []),
    )


def report_now(rt: Runtime, *, operator: str, note: str | None) -> int:
    """``engine reconcile``: compare and store a report, change nothing; the run's id. Raises
    :class:`Busy` while another run holds the lock."""
    run_id, report, _ = run_reconcile(rt, mode="report", trigger=PAGE_TRIGGER)
    with rt.sessions() as session:
        audit.record(
            session,
            operator,
            "reconcile_reported",
            at=rt.now(),
            note=note,
            detail={"run_id": run_id, "students": report.students, "totals": report.to_dict(limit=0)["totals"]},
        )
    return run_id


def apply_reviewed(rt: Runtime, preview: ApplyPreview, *, confirm: bool, operator: str, note: str | None) -> int:
    """``engine reconcile --apply [--grants-only] [--confirm]`` after the operator read ``preview``:
    compares again, stores the run and applies what it finds under the guard; the new run's id.

    ``confirm`` covers the revocations the preview named, no other (a change since then is held).
    Raises :class:`ConfirmationRequired` when the preview is over the guard and ``confirm`` is not
    given (nothing runs), :class:`Busy` while another run holds the lock."""
    if preview.over_limit and not confirm:
        raise ConfirmationRequired(f"{preview.revokes_total} revocations, more than {preview.limit}")
    run_id, _, applied = run_reconcile(
        rt,
        mode=apply_mode(preview),
        trigger=PAGE_TRIGGER,
        confirm=confirm,
        confirmed=preview.confirmed() if confirm else None,
    )
    brief = {k: v for k, v in applied.to_dict().items() if k != "events"} if applied else None
    record_apply(
        rt, "reconcile_applied", preview, run_id=run_id, confirm=confirm, operator=operator, note=note, applied=brief
    )
    return run_id


__all__ = [
    "ApplyPreview",
    "Busy",
    "ConfirmationRequired",
    "RunPage",
    "apply_preview",
    "apply_reviewed",
    "report_now",
    "run_page",
    "stored_run",
]
