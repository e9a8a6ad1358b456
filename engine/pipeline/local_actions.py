"""Steps the engine runs in its own database: codes, timers, alerts (the classes: ``classes.py``).

Each runs inside the transaction that records its result, so it is done exactly once.

Codes: a student has one open ``/registrar`` code at a time (``issue_token`` replaces the open
one), and linking is per student (every membership gets the ``DISCORD_LINKED``). So a code is
shared by every membership of the student that waits for the link, and ``revoke_token`` (one
membership's access ended) revokes it only when no other membership still waits for it: like
roles, tags and classes, a code is a union (docs/operations/discord.md, "The Discord bot").
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from connectors.base import StepResult
from engine.db.models import ActionRun, Membership, OnboardingToken, ScheduledEvent, Student
from engine.lifecycle.access import link_moves_on
from engine.pipeline.alerts import raise_alert
from engine.pipeline.runtime import Runtime
from engine.rules.model import Rules
from engine.statuses import TimerStatus

LocalAction = Callable[[Runtime, Session, ActionRun, Membership | None, Student], StepResult]


def _revoke_open_codes(session: Session, student: Student, now: datetime, reason: str) -> int:
    result = session.execute(
        update(OnboardingToken)
        .where(*OnboardingToken.unspent(student.id))
        .values(revoked_at=now, revoked_reason=reason)
    )
    return result.rowcount or 0


def store_code(
    session: Session, student: Student, membership: Membership | None, code: str, expires_at: datetime, now: datetime
) -> tuple[OnboardingToken, int]:
    """The student's new open code (issued for ``membership``), replacing the open one: the code's
    row and how many it replaced."""
    replaced = _revoke_open_codes(session, student, now, "replaced")
    token = OnboardingToken(
        code=code,
        student_id=student.id,
        membership_id=membership.id if membership else None,
        created_at=now,
        expires_at=expires_at,
    )
    session.add(token)
    session.flush()
    return token, replaced


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
    token, replaced = store_code(
        session, student, membership, code, datetime.fromisoformat(run.params["expires_at"]), rt.now()
    )
    note = f"; {replaced} earlier code(s) invalidated" if replaced else ""
    return StepResult.done(f"code issued, valid until {token.expires_at.isoformat()}{note}")


def _codes(count: int) -> str:
    return f"{count} open code{'' if count == 1 else 's'}"


def _waiting_for_the_code(session: Session, rules: Rules, student: Student, ending: Membership) -> list[Membership]:
    """The student's memberships other than ``ending`` that still wait for the code, the one
    issued a code last first.

    A membership waits when it was issued a code (open, or replaced since by another product's)
    that no end of its own revoked (``access_ended``), no code of the student has been used since
    that one was issued (a link reaches every membership), and a Discord link would still move
    it on (its state has a DISCORD_LINKED transition: a refunded or churned one waits for nothing,
    even with a code its end did not revoke). Token ids give the order, not clocks.
    """
    tokens = session.scalars(
        select(OnboardingToken).where(OnboardingToken.student_id == student.id).order_by(OnboardingToken.id)
    ).all()
    last_used = max((token.id for token in tokens if token.used_at is not None), default=0)
    latest: dict[int, int] = {}  # membership id -> the id of its newest code still waiting
    for token in tokens:
        if token.membership_id is None or token.membership_id == ending.id:
            continue
        if token.used_at is None and token.revoked_reason != "access_ended" and token.id > last_used:
            latest[token.membership_id] = token.id
    if not latest:
        return []
    found = session.scalars(select(Membership).where(Membership.id.in_(latest))).all()
    waiting = [
        other
        for other in found
        if other.product_key in rules.products and link_moves_on(rules, rules.products[other.product_key], other.state)
    ]
    return sorted(waiting, key=lambda other: latest[other.id], reverse=True)


def revoke_token(
    rt: Runtime, session: Session, run: ActionRun, membership: Membership | None, student: Student
) -> StepResult:
    """This membership's access ended: its code goes, unless another membership of the student
    still waits for the (one, shared) code; then the code is kept, handed over to that membership
    when it was this one's. This membership's codes replaced earlier stop counting as waiting."""
    now = rt.now()
    if membership is None:
        count = _revoke_open_codes(session, student, now, "access_ended")
        return StepResult.done(f"{_codes(count)} revoked")
    # Its codes a later one replaced: they answer "access ended" from now on, and no longer
    # make this membership wait (a later end of another product revokes the code).
    session.execute(
        update(OnboardingToken)
        .where(
            OnboardingToken.membership_id == membership.id,
            OnboardingToken.used_at.is_(None),
            OnboardingToken.revoked_reason == "replaced",
        )
        .values(revoked_reason="access_ended")
    )
    open_codes = session.scalars(
        select(OnboardingToken).where(*OnboardingToken.unspent(student.id)).order_by(OnboardingToken.id.desc())
    ).all()
    waiting = _waiting_for_the_code(session, rt.rules.rules, student, membership)
    if not open_codes:
        return StepResult.done("no open code to revoke")
    if not waiting:
        for token in open_codes:
            token.revoked_at, token.revoked_reason = now, "access_ended"
        session.flush()
        return StepResult.done(f"{_codes(len(open_codes))} revoked: no other product of the student waits for it")
    by_id = {other.id: other for other in waiting}
    keep = next((token for token in open_codes if token.membership_id in by_id), None)
    if keep is not None:
        detail = f"code kept: still needed by {by_id[keep.membership_id].product_key}"
    else:  # this membership's code (or nobody's): the product that waits takes it over
        keep, heir = open_codes[0], waiting[0]
        keep.membership_id = heir.id
        detail = f"code kept: handed over to {heir.product_key}, which still waits for the Discord link"
    extra = [token for token in open_codes if token is not keep]  # one code per student: an anomaly
    for token in extra:
        token.revoked_at, token.revoked_reason = now, "access_ended"
    session.flush()
    if extra:
        detail += f"; {_codes(len(extra))} more revoked"
    return StepResult.done(detail)


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
            ScheduledEvent.status == TimerStatus.PENDING,
        )
        .values(status=TimerStatus.CANCELLED)
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
    condition = [ScheduledEvent.membership_id == membership.id, ScheduledEvent.status == TimerStatus.PENDING]
    events = run.params.get("events") or []
    if events:
        condition.append(ScheduledEvent.event_type.in_(events))
    result = session.execute(update(ScheduledEvent).where(*condition).values(status=TimerStatus.CANCELLED))
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


LOCAL_ACTIONS: dict[str, LocalAction] = {
    "issue_token": issue_token,
    "revoke_token": revoke_token,
    "schedule": schedule,
    "cancel_timers": cancel_timers,
    "alert": alert,
}
