"""Apply an access diff as ordinary pipeline steps, behind the blast-radius guard.

One internal ``RECONCILE`` event per student, already planned: its action runs are the
grant and revoke steps (add_role / remove_role, add_tag / remove_tag, enroll / unenroll),
one per membership and action. The worker runs them like any other event's steps, under
the student's lock: audited in the event log, retried once, alerted on failure, and the
grant ledger updated by their results. A remove step is still narrowed by the ledger to
what the engine granted, so nothing given by hand can be taken.

Guard: more revocations than the limit (``--max-revokes``; by default 10 or 5 % of the
students compared, whichever is larger: a handful of hand-made slips always pass, a rules
mistake that would strip a tenth of the course never does) are not applied without
``confirm``: nothing is applied, an alert is raised and the list is returned.
"""

from __future__ import annotations

import math
import uuid
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from engine import alert_texts
from engine.db.models import ActionRun, Event, History
from engine.pipeline.alerts import notify_alerts, raise_alert
from engine.pipeline.runtime import Runtime
from engine.reconcile.diff import AccessDiff, Change
from engine.rules.actions import ledger_uses
from engine.statuses import EventStatus, RunStatus

RECONCILE_EVENT = "RECONCILE"
DEFAULT_MAX_REVOKES = 10
REVOKE_SHARE = 0.05
_BATCH = 500  # students per transaction when queueing

# (ledger kind, grants?) -> (action, parameter), from the action registry.
_ACTION_FOR: dict[tuple[str, bool], tuple[str, str]] = {
    (use.kind, use.grants): (name, use.param) for name, use in ledger_uses()
}


def revoke_limit(students: int, max_revokes: int | None = None) -> int:
    """How many revocations a run applies without confirmation."""
    if max_revokes is not None:
        return max_revokes
    return max(DEFAULT_MAX_REVOKES, math.ceil(students * REVOKE_SHARE))


@dataclass
class Applied:
    held: bool = False  # the guard stopped the run: nothing applied
    limit: int = 0
    events: list[int] = field(default_factory=list)  # one RECONCILE event per student changed
    grants: int = 0
    revokes: int = 0
    alert_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def apply_access_diff(
    rt: Runtime,
    diff: AccessDiff,
    *,
    confirm: bool = False,
    max_revokes: int | None = None,
    grants_only: bool = False,
    actor: str = "reconcile",
    run_id: int | None = None,
    note: str | None = None,
) -> Applied:
    """Queue ``diff`` as pipeline steps (``rt.queue`` gets them run); the one entry point for reconcile and plan.

    ``grants_only`` applies the missing grants and leaves every revocation for an admin. ``note``
    (an operator's "why") goes into each student's history entry.
    """
    revokes = [] if grants_only else diff.revokes
    limit = revoke_limit(diff.students, max_revokes)
    if len(revokes) > limit and not confirm:
        return _hold(rt, diff, revokes, limit, actor, run_id)
    by_student: dict[int, list[tuple[Change, bool]]] = defaultdict(list)
    for change in revokes:
        by_student[change.student_id].append((change, False))  # revokes first: a moved role is removed, then added
    for change in diff.grants:
        by_student[change.student_id].append((change, True))
    applied = Applied(limit=limit, grants=len(diff.grants), revokes=len(revokes))
    students = list(by_student.values())
    for start in range(0, len(students), _BATCH):
        with rt.sessions.begin() as session:
            batch = _queue_students(rt, session, students[start : start + _BATCH], actor, run_id, note)
        applied.events += batch
        for event_id in batch:
            rt.queue.enqueue(event_id)
    return applied


def _queue_students(
    rt: Runtime,
    session: Session,
    students: list[list[tuple[Change, bool]]],
    actor: str,
    run_id: int | None,
    note: str | None = None,
) -> list[int]:
    """One RECONCILE event per student, planned already (status processing): three statements per batch."""
    now = rt.now()
    planned = [_steps(changes) for changes in students]
    events = []
    for changes in students:
        first = changes[0][0]
        dedupe = f"reconcile:{run_id}:{first.student_id}" if run_id is not None else f"reconcile:{uuid.uuid4().hex}"
        events.append(
            {
                "source": "reconcile",
                "type": RECONCILE_EVENT,
                "dedupe_key": dedupe,
                # The shape of every internal event (engine.pipeline.intake.store_internal).
                "payload": {
                    "event": RECONCILE_EVENT,
                    "product": None,
                    "email": first.email,
                    "fields": {"run_id": run_id, "actor": actor},
                },
                "occurred_at": now,
                "received_at": now,
                "enqueued_at": now,
                "status": EventStatus.PROCESSING,  # planned: the worker runs the steps
                "email": first.email,
                "student_id": first.student_id,
                "plans": [
                    {
                        "reconcile": {
                            "run_id": run_id,
                            "actor": actor,
                            "grants": [_brief(c) for c, grant in changes if grant],
                            "revokes": [_brief(c) for c, grant in changes if not grant],
                        }
                    }
                ],
                "correlation_id": uuid.uuid4().hex,
            }
        )
    ids = list(session.scalars(insert(Event).returning(Event.id, sort_by_parameter_order=True), events))
    runs, history = [], []
    for event_id, changes, steps in zip(ids, students, planned, strict=True):
        for index, ((membership_id, action, param), resources) in enumerate(steps.items()):
            runs.append(
                {
                    "event_id": event_id,
                    "membership_id": membership_id,
                    "step_index": index,
                    "action": action,
                    "params": {param: resources},
                    "status": RunStatus.PENDING,
                    "attempts": 0,
                    "created_at": now,
                }
            )
        history.append(
            {
                "kind": "reconcile",
                "created_at": now,
                "student_id": changes[0][0].student_id,
                "event_id": event_id,
                "actor": actor,
                "detail": {
                    "run_id": run_id,
                    "steps": [f"{a} {', '.join(r)}" for (_, a, _), r in steps.items()],
                    **({"note": note} if note else {}),
                },
            }
        )
    session.execute(insert(ActionRun), runs)
    session.execute(insert(History), history)
    return ids


def _steps(changes: list[tuple[Change, bool]]) -> dict[tuple[int, str, str], list[str]]:
    """(membership, action, parameter) -> resources, in order: one step per membership and action."""
    steps: dict[tuple[int, str, str], list[str]] = {}
    for change, grant in changes:
        action, param = _ACTION_FOR[(change.kind, grant)]
        steps.setdefault((change.membership_id, action, param), []).append(change.resource)
    return steps


def _brief(change: Change) -> dict[str, Any]:
    return {"product": change.product, "kind": change.kind, "resource": change.resource}


def _hold(rt: Runtime, diff: AccessDiff, revokes: list[Change], limit: int, actor: str, run_id: int | None) -> Applied:
    message = alert_texts.reconcile_guard(run_id, revokes, len({c.student_id for c in revokes}), limit)
    with rt.sessions.begin() as session:
        alert = raise_alert(rt, session, kind="reconcile.guard", message=message)
        alert_id = alert.id
    notify_alerts(rt)
    return Applied(held=True, limit=limit, revokes=len(revokes), grants=len(diff.grants), alert_id=alert_id)
