"""The event log as an admin reads it (``GET /admin/events``, ``engine events``): pages of events,
newest first, filtered by status, type, student and date; and one event in full, with its payload,
plans, steps and alerts. Secrets redacted (:mod:`engine.service.redaction`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session

from engine.db.models import Alert, Event, Student
from engine.service import schemas
from engine.service.alerts import alert_out
from engine.service.redaction import Redactor, planned_codes, student_codes
from engine.service.students import email_key
from engine.settings import Settings


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
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if status:
        conditions.append(Event.status == status)
    if type:
        conditions.append(Event.type == type.strip().upper())
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
