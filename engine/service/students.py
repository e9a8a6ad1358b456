"""The students an admin looks up (``GET /admin/students``, ``GET /admin/students/{email}``, the admin
page's Students view and its CSV export): the list, searched (e-mail, name, phone, Discord id,
transaction) and filtered by state, product, Discord link and "stuck" (waiting for the Discord link
too long), and one student in full: memberships, grants, pending timers, open codes (never the
code) and history.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from engine.db.folding import contains_folded
from engine.db.models import Event, Grant, Membership, OnboardingToken, ScheduledEvent, Student
from engine.lifecycle.access import LINK_EVENT
from engine.rules.model import Rules
from engine.service import schemas
from engine.service.redaction import Redactor, student_codes
from engine.settings import Settings
from engine.statuses import TimerStatus

SEARCH_MAX_LENGTH = 200
EXPORT_BATCH = 2000  # students per query of the CSV export: bounded memory, no transaction held open
EXPORT_COLUMNS = ("email", "name", "phone", "discord_id", "product", "state", "since", "paid_until")
# What a spreadsheet reads as the start of a formula in a cell (OWASP's "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


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


@dataclass(frozen=True)
class StudentFilters:
    """What the list is narrowed to; every field optional. ``search`` is one box (see
    :func:`search_condition`); ``state``, ``product`` and ``stuck_days`` apply to the same
    membership; ``linked``: the student has (True) or has not (False) linked Discord."""

    search: str | None = None
    state: str | None = None
    product: str | None = None
    stuck_days: int | None = None
    linked: bool | None = None


def _conditions(rules: Rules | None, filters: StudentFilters, now: datetime, dialect: str) -> list[ColumnElement[bool]]:
    """The WHERE of the students matching ``filters`` on the database ``dialect``. Without rules
    nobody waits for the link (the overview counts the same)."""
    # All membership filters apply to the same membership ("a curso membership that is active").
    membership: list[ColumnElement[bool]] = []
    if filters.state:
        membership.append(Membership.state == filters.state)
    if filters.product:
        membership.append(Membership.product_key == filters.product)
    if filters.stuck_days is not None:
        waiting = sorted(states_waiting_for_link(rules)) if rules is not None else []
        membership.append(Membership.state.in_(waiting))
        membership.append(Membership.state_changed_at < now - timedelta(days=filters.stuck_days))
    conditions: list[ColumnElement[bool]] = []
    if membership:
        conditions.append(Student.id.in_(select(Membership.student_id).where(*membership)))
    if filters.linked is not None:
        conditions.append(Student.discord_id.is_not(None) if filters.linked else Student.discord_id.is_(None))
    if filters.search and filters.search.strip():
        conditions.append(search_condition(filters.search, dialect))
    return conditions


def student_page(
    session: Session,
    rules: Rules | None,
    *,
    search: str | None = None,
    state: str | None = None,
    product: str | None = None,
    stuck_days: int | None = None,
    linked: bool | None = None,
    now: datetime,
    limit: int = 50,
    offset: int = 0,
) -> schemas.StudentPage:
    """Students, newest first, matching ``search`` (:func:`search_condition`), with a membership
    matching every membership filter given: in ``state``, of ``product``, waiting for the Discord
    link (:func:`states_waiting_for_link`) for more than ``stuck_days`` days; ``linked`` or not."""
    filters = StudentFilters(search=search, state=state, product=product, stuck_days=stuck_days, linked=linked)
    conditions = _conditions(rules, filters, now, _dialect(session))
    page = select(Student).where(*conditions).options(selectinload(Student.memberships)).order_by(Student.id.desc())
    if filters.search and filters.search.strip():
        # No index serves a substring: a search reads every student, so the count comes in that one pass.
        rows = session.execute(page.add_columns(func.count().over()).limit(limit).offset(offset)).all()
        students = [student for student, _ in rows]
        total = rows[0][1] if rows else (_count(session, conditions) if offset else 0)
    else:
        students = list(session.scalars(page.limit(limit).offset(offset)))
        total = _count(session, conditions)
    items = [schemas.StudentSummary.model_validate(s) for s in students]
    return schemas.StudentPage(items=items, total=total, limit=limit, offset=offset)


def count_students(session: Session, rules: Rules | None, filters: StudentFilters, *, now: datetime) -> int:
    """How many students :func:`student_page` finds with ``filters`` (all pages)."""
    return _count(session, _conditions(rules, filters, now, _dialect(session)))


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def _count(session: Session, conditions: list[ColumnElement[bool]]) -> int:
    return session.scalar(select(func.count()).select_from(Student).where(*conditions)) or 0


def export_rows(
    sessions: sessionmaker[Session],
    rules: Rules | None,
    filters: StudentFilters,
    *,
    now: datetime,
    batch: int = EXPORT_BATCH,
) -> Iterator[tuple[Any, ...]]:
    """Every student matching ``filters``, newest first, as :data:`EXPORT_COLUMNS` rows: one row per
    membership (in the order they were made), one with empty membership cells for a student without
    any. Read ``batch`` students at a time (one query), each batch in a session of its own (keyset
    on the id): a slow download holds no transaction open and no more than a batch in memory."""
    conditions: list[ColumnElement[bool]] | None = None
    before: int | None = None
    while True:
        with sessions() as session:
            if conditions is None:
                conditions = _conditions(rules, filters, now, _dialect(session))
            chosen = (
                select(Student.id)
                .where(*conditions, *([Student.id < before] if before is not None else []))
                .order_by(Student.id.desc())
                .limit(batch)
            )
            rows = session.execute(
                select(
                    Student.id,
                    Student.email,
                    Student.name,
                    Student.phone,
                    Student.discord_id,
                    Membership.product_key,
                    Membership.state,
                    Membership.state_changed_at,
                    Membership.paid_until,
                )
                .outerjoin(Membership, Membership.student_id == Student.id)
                .where(Student.id.in_(chosen))
                .order_by(Student.id.desc(), Membership.id)
            ).all()
        for _, *columns in rows:
            yield tuple(columns)
        if len({row.id for row in rows}) < batch:
            return
        before = rows[-1].id


def spreadsheet_safe(value: str | None) -> str:
    """A CSV text cell: None empty, and text a spreadsheet would run as a formula (``=``, ``+``,
    ``-``, ``@``, tab, carriage return first) behind a ``'``, which makes it text. E.164 phones
    start with ``+``: they read ``'+5511...`` too."""
    if not value:
        return ""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def _iso_utc(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(UTC).isoformat()  # whatever the session's time zone


def export_csv(
    sessions: sessionmaker[Session],
    rules: Rules | None,
    filters: StudentFilters,
    *,
    now: datetime,
    batch: int = EXPORT_BATCH,
) -> Iterator[str]:
    """:func:`export_rows` as CSV text: the header (:data:`EXPORT_COLUMNS`), then the rows a batch at
    a time, each text cell :func:`spreadsheet_safe`, dates in ISO 8601 (UTC)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def taken() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(EXPORT_COLUMNS)
    yield taken()
    rows = export_rows(sessions, rules, filters, now=now, batch=batch)
    for count, (email, name, phone, discord_id, product, state, since, paid_until) in enumerate(rows, 1):
        safe = map(spreadsheet_safe, (email, name, phone, discord_id, product, state))
        writer.writerow((*safe, _iso_utc(since), _iso_utc(paid_until)))
        if count % batch == 0:
            yield taken()
    if rest := taken():
        yield rest


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


# --- the search box ---------------------------------------------------------------------


_PHONE_TYPED = re.compile(r"[0-9\s+().-]+")
PHONE_MIN_DIGITS = 4  # fewer digits would match nearly every phone


def phone_digits(text: str) -> str | None:
    """The digits of what was typed when it reads as (part of) a phone number, else None."""
    if not _PHONE_TYPED.fullmatch(text):
        return None
    digits = re.sub(r"[^0-9]", "", text)
    return digits if len(digits) >= PHONE_MIN_DIGITS else None


def search_condition(text: str, dialect: str) -> ColumnElement[bool]:
    """What one search box finds: part of the e-mail (any case) or of the name (any case, accents
    or not), part of the phone (the digits typed, against the stored E.164 digits), the Discord id
    (exact), a Hotmart/Kiwify/Eduzz transaction (exact: a membership's or any of the student's
    events')."""
    typed = text.strip()
    matches: list[ColumnElement[bool]] = [
        Student.email.contains(typed.lower(), autoescape=True),
        contains_folded(Student.name, typed, dialect),
        Student.discord_id == typed,
        Student.id.in_(select(Membership.student_id).where(Membership.transaction == typed)),
        Student.id.in_(select(Event.student_id).where(Event.transaction == typed, Event.student_id.is_not(None))),
    ]
    digits = phone_digits(typed)
    if digits:
        matches.append(Student.phone.contains(digits, autoescape=True))
    return or_(*matches)
