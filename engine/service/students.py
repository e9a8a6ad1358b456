"""The students an admin looks up (``GET /admin/students``, ``GET /admin/students/{email}``): the
list, filtered by state, product and "stuck" (waiting for the Discord link too long), and one
student in full: memberships, grants, pending timers, open codes (never the code) and history.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session, selectinload

from engine.db.models import Event, Grant, Membership, OnboardingToken, ScheduledEvent, Student
from engine.lifecycle.access import LINK_EVENT
from engine.rules.model import Rules
from engine.service import schemas
from engine.service.redaction import Redactor, student_codes
from engine.settings import Settings
from engine.statuses import TimerStatus


def email_key(email: str) -> str:
    """How an e-mail is stored (students and events): trimmed, lower-cased."""
    return email.strip().lower()


def states_waiting_for_link(rules: Rules) -> frozenset[str]:
    """The states a membership waits in for the student's Discord link: those the link event
    (DISCORD_LINKED) moves a membership out of. The rules name them, not the engine: under the
    shipped rules, ``pending_onboarding`` (``linked`` takes it to ``active``); a relink from
    ``active`` stays there, so ``active`` does not wait."""
    return frozenset(
        state
        for rule in rules.transitions
        if LINK_EVENT in rule.events and rule.dest is not None
        for state in (rules.states if "*" in rule.sources else rule.sources)
        if state != rule.dest
    )


def student_page(
    session: Session,
    rules: Rules,
    *,
    state: str | None = None,
    product: str | None = None,
    stuck_days: int | None = None,
    now: datetime,
    limit: int = 50,
    offset: int = 0,
) -> schemas.StudentPage:
    """Students, newest first, with a membership matching every filter given: in ``state``, of
    ``product``, waiting for the Discord link (:func:`states_waiting_for_link`) for more than
    ``stuck_days`` days."""
    # All filters apply to the same membership ("a curso membership that is active").
    conditions: list[ColumnElement[bool]] = []
    if state:
        conditions.append(Membership.state == state)
    if product:
        conditions.append(Membership.product_key == product)
    if stuck_days is not None:
        conditions.append(Membership.state.in_(sorted(states_waiting_for_link(rules))))
        conditions.append(Membership.state_changed_at < now - timedelta(days=stuck_days))
    query = select(Student)
    if conditions:
        query = query.where(Student.id.in_(select(Membership.student_id).where(*conditions)))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    students = session.scalars(
        query.options(selectinload(Student.memberships)).order_by(Student.id.desc()).limit(limit).offset(offset)
    ).all()
    items = [schemas.StudentSummary.model_validate(s) for s in students]
    return schemas.StudentPage(items=items, total=total, limit=limit, offset=offset)


def student_detail(
    session: Session, settings: Settings, email: str, *, history_limit: int, now: datetime
) -> schemas.StudentDetail | None:
    """The student with ``email`` (any case) in full, the newest ``history_limit`` events; None if unknown."""
    student = session.scalar(
        select(Student).options(selectinload(Student.memberships)).where(Student.email == email_key(email))
    )
    if student is None:
        return None
    grants = session.scalars(select(Grant).where(Grant.student_id == student.id).order_by(Grant.id)).all()
    timers = session.scalars(
        select(ScheduledEvent)
        .join(Membership, ScheduledEvent.membership_id == Membership.id)
        .where(Membership.student_id == student.id, ScheduledEvent.status == TimerStatus.PENDING)
        .order_by(ScheduledEvent.due_at, ScheduledEvent.id)
    ).all()
    codes = session.scalars(
        select(OnboardingToken)
        .where(*OnboardingToken.unspent(student.id), OnboardingToken.expires_at > now)
        .order_by(OnboardingToken.created_at.desc(), OnboardingToken.id.desc())
    ).all()
    mine = or_(Event.student_id == student.id, Event.email == student.email)
    history_total = session.scalar(select(func.count()).select_from(Event).where(mine)) or 0
    history = session.scalars(select(Event).where(mine).order_by(Event.id.desc()).limit(history_limit)).all()
    redact = Redactor.for_settings(settings, student_codes(session, [student.id]))
    return _detail(
        student, grants=grants, timers=timers, codes=codes, history=history, history_total=history_total, redact=redact
    )


def _detail(
    student: Student,
    *,
    grants: Iterable[Grant],
    timers: Iterable[ScheduledEvent],
    codes: Iterable[OnboardingToken],
    history: Iterable[Event],
    history_total: int,
    redact: Redactor,
) -> schemas.StudentDetail:
    products = {m.id: m.product_key for m in student.memberships}

    def owned(model: type[schemas.Row], rows: Iterable[Any]) -> list[Any]:
        # Grants, timers and codes name their membership; the admin reads its product.
        return [
            model.model_validate(row).model_copy(update={"product": products.get(row.membership_id)}) for row in rows
        ]

    detail = schemas.StudentDetail.model_validate(student, context={"redact": redact})
    return detail.model_copy(
        update={
            "grants": owned(schemas.GrantOut, grants),
            "pending_timers": owned(schemas.TimerOut, timers),
            "open_codes": owned(schemas.OnboardingCodeOut, codes),
            "history": [schemas.HistoryItem.model_validate(e, context={"redact": redact}) for e in history],
            "history_total": history_total,
        }
    )
