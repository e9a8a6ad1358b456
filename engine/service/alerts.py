"""The alerts an admin reads and acknowledges (``GET /admin/alerts``, ``POST /admin/alerts/{id}/ack``),
newest first, with their student's e-mail and no secret in their message.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from engine.db.models import Alert, Student
from engine.service import schemas
from engine.service.redaction import Redactor, student_codes
from engine.settings import Settings


def alert_out(alert: Alert, student_email: str | None, redact: Redactor) -> schemas.AlertOut:
    out = schemas.AlertOut.model_validate(alert, context={"redact": redact})
    return out.model_copy(update={"student_email": student_email})


def alert_page(
    session: Session,
    settings: Settings,
    *,
    acknowledged: bool | None,
    limit: int,
    offset: int,
    kind: str | None = None,
    group: str | None = None,
    student_email: str | None = None,
) -> schemas.AlertPage:
    """``acknowledged``: False, the open alerts; True, the acknowledged ones; None, all. ``kind``,
    ``group`` (the cause's ``group_key``) and ``student_email`` narrow it further (the admin page's filters)."""
    conditions: list[ColumnElement[bool]] = []
    if acknowledged is True:
        conditions.append(Alert.acknowledged_at.is_not(None))
    elif acknowledged is False:
        conditions.append(Alert.acknowledged_at.is_(None))
    if kind:
        conditions.append(Alert.kind == kind)
    if group:
        conditions.append(Alert.group_key == group)
    if student_email:
        conditions.append(
            Alert.student_id.in_(select(Student.id).where(Student.email == student_email.strip().lower()))
        )
    total = session.scalar(select(func.count()).select_from(Alert).where(*conditions)) or 0
    rows = session.execute(
        select(Alert, Student.email)
        .outerjoin(Student, Alert.student_id == Student.id)
        .where(*conditions)
        .order_by(Alert.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    redact = Redactor.for_settings(settings, student_codes(session, [alert.student_id for alert, _ in rows]))
    return schemas.AlertPage(
        items=[alert_out(alert, email, redact) for alert, email in rows], total=total, limit=limit, offset=offset
    )


def alert_kinds(session: Session) -> list[str]:
    """The kinds of alerts raised so far, for the admin page's filter."""
    return list(session.scalars(select(Alert.kind).group_by(Alert.kind).order_by(Alert.kind)))


def alert_detail(session: Session, settings: Settings, alert_id: int) -> schemas.AlertOut | None:
    """One alert, redacted as in the list; None if there is none."""
    row = session.execute(
        select(Alert, Student.email).outerjoin(Student, Alert.student_id == Student.id).where(Alert.id == alert_id)
    ).first()
    if row is None:
        return None
    alert, email = row
    redact = Redactor.for_settings(settings, student_codes(session, [alert.student_id]))
    return alert_out(alert, email, redact)


def acknowledge_alert(session: Session, settings: Settings, alert_id: int, *, now: datetime) -> schemas.AlertOut | None:
    """Acknowledge the alert (idempotent: the first acknowledgement's time stays); None if there is none."""
    alert = session.get(Alert, alert_id, with_for_update=True)
    if alert is None:
        return None
    if alert.acknowledged_at is None:
        alert.acknowledged_at = now
    session.commit()
    email = session.scalar(select(Student.email).where(Student.id == alert.student_id)) if alert.student_id else None
    redact = Redactor.for_settings(settings, student_codes(session, [alert.student_id]))
    return alert_out(alert, email, redact)
