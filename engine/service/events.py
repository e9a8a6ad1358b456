"""The event log as an admin reads it (``GET /admin/events``, ``engine events``, the admin page's
Events view): pages of events, newest first, filtered by status, type, student, product, cause, text
and date; one event in full, with its payload, plans, steps, alerts and history; the types seen and
the causes of ``needs_attention`` (the page's choices). Secrets redacted (:mod:`engine.service.redaction`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session

from engine.db.models import Alert, Event, History, Student
from engine.service import schemas
from engine.service.alerts import alert_out
from engine.service.redaction import Redactor, planned_codes, student_codes
from engine.service.students import email_key
from engine.settings import Settings
from engine.statuses import EventStatus


def aware(value: datetime | None) -> datetime | None:
    """Query datetimes without a zone are taken as UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def event_filters(
    *,
    status: str | None = None,
    type: str | None = None,
    email: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    product: str | None = None,
    reason: str | None = None,
    text: str | None = None,
) -> list[ColumnElement[bool]]:
    """``reason``: this exact cause; ``text``: a piece of the e-mail or the reason (any case), or the
    whole transaction code."""
    conditions: list[ColumnElement[bool]] = []
    if status:
        conditions.append(Event.status == status)
    if type:
        conditions.append(Event.type == type.strip().upper())
    if product:
        conditions.append(Event.product_key == product.strip())
    if reason:
        conditions.append(Event.reason == reason)
    if text and text.strip():
        needle = text.strip()
        conditions.append(
            or_(
                Event.email.contains(needle.lower(), autoescape=True),
                Event.transaction == needle,
                Event.reason.icontains(needle, autoescape=True),
            )
        )
    if email:
        key = email_key(email)
        # E-mails are stored lower-cased (intake and students); an event of the student may
        # also be known only by its student id.
        conditions.append(or_(Event.email == key, Event.student_id.in_(select(Student.id).where(Student.email == key))))
    if since is not None:
        conditions.append(Event.received_at >= aware(since))
    if until is not None:
        conditions.append(Event.received_at < aware(until))
    return conditions


def query_events(session: Session, *, limit: int = 50, offset: int = 0, **filters: Any) -> tuple[list[Event], int]:
    """Events matching ``filters`` (see :func:`event_filters`), newest first, and their total."""
    conditions = event_filters(**filters)
    total = session.scalar(select(func.count()).select_from(Event).where(*conditions)) or 0
    rows = session.scalars(select(Event).where(*conditions).order_by(Event.id.desc()).limit(limit).offset(offset))
    return list(rows), total


def event_page(
    session: Session, settings: Settings, *, limit: int = 50, offset: int = 0, **filters: Any
) -> schemas.EventPage:
    """One page of the events matching ``filters`` (see :func:`event_filters`), newest first."""
    events, total = query_events(session, limit=limit, offset=offset, **filters)
    redact = Redactor.for_settings(settings)
    items = [schemas.EventSummary.model_validate(event, context={"redact": redact}) for event in events]
    return schemas.EventPage(items=items, total=total, limit=limit, offset=offset)


def event_detail(session: Session, settings: Settings, event_id: int) -> schemas.EventDetail | None:
    """The event with its steps and its alerts (with their student's e-mail); None if there is none."""
    event = session.get(Event, event_id)
    if event is None:
        return None
    runs = event.action_runs
    alerts = session.execute(
        select(Alert, Student.email)
        .outerjoin(Student, Alert.student_id == Student.id)
        .where(Alert.event_id == event_id)
        .order_by(Alert.id.desc())
    ).all()
    codes = student_codes(session, [event.student_id]) + planned_codes(runs, event.plans)
    redact = Redactor.for_settings(settings, codes)
    detail = schemas.EventDetail.model_validate(event, context={"redact": redact})
    return detail.model_copy(update={"alerts": [alert_out(alert, email, redact) for alert, email in alerts]})


def event_types(session: Session) -> list[str]:
    """Every event type in the log, A to Z (the page's type filter)."""
    return list(session.scalars(select(Event.type).where(Event.type.is_not(None)).distinct().order_by(Event.type)))


@dataclass(frozen=True)
class Cause:
    """One reason events need attention, and how many do."""

    reason: str
    events: int


def attention_causes(session: Session, settings: Settings) -> list[Cause]:
    """The causes of ``needs_attention`` events, most frequent first (what a bulk replay picks from);
    a cause with a secret in it is left out (its text could not be shown, nor chosen)."""
    redact = Redactor.for_settings(settings)
    rows = session.execute(
        select(Event.reason, func.count())
        .where(Event.status == EventStatus.NEEDS_ATTENTION, Event.reason.is_not(None))
        .group_by(Event.reason)
        .order_by(func.count().desc(), Event.reason)
    )
    return [Cause(reason, count) for reason, count in rows if redact.text(reason) == reason]


@dataclass(frozen=True)
class EventHistoryEntry:
    """What was done to the event after it arrived: a replay, a retry, by whom and why."""

    at: datetime
    kind: str
    actor: str | None
    rules_version: str | None
    note: str | None
    detail: dict[str, Any]


def event_history(session: Session, settings: Settings, event_id: int) -> list[EventHistoryEntry]:
    """The event's history entries, oldest first, secrets redacted."""
    redact = Redactor.for_settings(settings)
    entries = session.scalars(select(History).where(History.event_id == event_id).order_by(History.id))
    out = []
    for entry in entries:
        detail = redact(dict(entry.detail or {}))
        note = detail.pop("note", None)
        out.append(EventHistoryEntry(entry.created_at, entry.kind, entry.actor, entry.rules_version, note, detail))
    return out
