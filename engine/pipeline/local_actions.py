"""Steps the engine runs in its own database: codes, timers, alerts, the course's classes.

Each runs inside the transaction that records its result, so it is done exactly once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from connectors.base import StepResult
from engine.db.models import ActionRun, Membership, OnboardingToken, ScheduledEvent, Student
from engine.pipeline import ledger
from engine.pipeline.alerts import raise_alert
from engine.pipeline.classes import enroll_student, unenroll_student
from engine.pipeline.runtime import Runtime

LocalAction = Callable[[Runtime, Session, ActionRun, Membership | None, Student], StepResult]


def _revoke_open_codes(session: Session, student: Student, now: datetime, reason: str) -> int:
    result = session.execute(
        update(OnboardingToken)
        .where(*OnboardingToken.unspent(student.id))
        .values(revoked_at=now, revoked_reason=reason)
    )
    return result.rowcount or 0


def issue_token(
    rt: Runtime, session: Session, run: ActionRun, membership: Membership | None, student: Student
) -> StepResult:
    code = run.params["code"]
    existing = session.scalar(select(OnboardingToken).where(OnboardingToken.code == code))
    if existing is not None:
        if existing.student_id == student.id and existing.membership_id == (membership.id if membership else None):
            return StepResult.done(f"code already issued (token {existing.id})")  # resumed after a crash
        # 40 random bits met an existing code: the planned steps carry this code, so stop here.
        return StepResult.failed(
            "engine.code_collision",
            "the new code collided with an existing one; send a fresh one with POST /admin/students/{email}/code",
        )
    now = rt.now()
    replaced = _revoke_open_codes(session, student, now, "replaced")
    token = OnboardingToken(
        code=code,
        student_id=student.id,
        membership_id=membership.id if membership else None,
        created_at=now,
        expires_at=datetime.fromisoformat(run.params["expires_at"]),
    )
    session.add(token)
    session.flush()
    note = f"; {replaced} earlier code(s) invalidated" if replaced else ""
    return StepResult.done(f"code issued, valid until {token.expires_at.isoformat()}{note}")


def revoke_token(
    rt: Runtime, session: Session, run: ActionRun, membership: Membership | None, student: Student
) -> StepResult:
    count = _revoke_open_codes(session, student, rt.now(), "access_ended")
    return StepResult.done(f"{count} open code(s) revoked")


def schedule(
    rt: Runtime, session: Session, run: ActionRun, membership: Membership | None, student: Student
) -> StepResult:
    if membership is None:
        return StepResult.failed("engine.no_membership", "a timer needs a membership")
    event_type = run.params["event"]
    # One pending timer per event type and membership: a new one replaces the old.
    session.execute(
        update(ScheduledEvent)
        .where(
            ScheduledEvent.membership_id == membership.id,
            ScheduledEvent.event_type == event_type,
            ScheduledEvent.status == "pending",
        )
        .values(status="cancelled")
    )
    due = datetime.fromisoformat(run.params["due_at"])
    session.add(
        ScheduledEvent(
            membership_id=membership.id,
            event_type=event_type,
            due_at=due,
            created_by_event_id=run.event_id,
            created_at=rt.now(),
        )
    )
    return StepResult.done(f"{event_type} due at {due.isoformat()}")


def cancel_timers(
    rt: Runtime, session: Session, run: ActionRun, membership: Membership | None, student: Student
) -> StepResult:
    if membership is None:
        return StepResult.done("no membership, no timers")
    condition = [ScheduledEvent.membership_id == membership.id, ScheduledEvent.status == "pending"]
    events = run.params.get("events") or []
    if events:
        condition.append(ScheduledEvent.event_type.in_(events))
    result = session.execute(update(ScheduledEvent).where(*condition).values(status="cancelled"))
    return StepResult.done(f"{result.rowcount or 0} timer(s) cancelled")


def alert(rt: Runtime, session: Session, run: ActionRun, membership: Membership | None, student: Student) -> StepResult:
    created = raise_alert(
        rt,
        session,
        kind="rules.alert",
        message=run.params["message"],
        event_id=run.event_id,
        action_run_id=run.id,
        student_id=student.id,
    )
    return StepResult.done(f"alert {created.id} raised")


def enroll(
    rt: Runtime, session: Session, run: ActionRun, membership: Membership | None, student: Student
) -> StepResult:
    keys = list(run.params.get("classes", []))
    names = rt.rules.rules.classes
    for key in keys:
        enroll_student(session, student.id, key, names.get(key))
    return StepResult.done(f"enrolled in {', '.join(keys) or 'nothing'}")


def unenroll(
    rt: Runtime, session: Session, run: ActionRun, membership: Membership | None, student: Student
) -> StepResult:
    # Only the classes this membership enrolled in and no other membership still grants.
    step, ready = ledger.effective_step(session, run, membership)
    if ready is not None:
        return ready
    keys = list(step.params.get("classes", []))
    unenroll_student(session, student.id, keys)
    return StepResult.done(f"left {', '.join(keys) or 'nothing'}")


LOCAL_ACTIONS: dict[str, LocalAction] = {
    "enroll": enroll,
    "unenroll": unenroll,
    "issue_token": issue_token,
    "revoke_token": revoke_token,
    "schedule": schedule,
    "cancel_timers": cancel_timers,
    "alert": alert,
}
