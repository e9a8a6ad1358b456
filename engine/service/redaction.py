"""What the admin sees, for the API and the CLI alike: event queries and redacted read models.

Secrets never leave: the hottok and other configured tokens are redacted wherever they could
appear, and onboarding codes are never shown (only when they were issued and expire).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session

from engine.db.models import ActionRun, Alert, Event, Grant, OnboardingToken, ScheduledEvent, Student
from engine.rules.actions import ACTIONS, TOKEN_PLACEHOLDER
from engine.service import schemas
from engine.settings import Settings

REDACTED = "[redacted]"
# Keys whose values are credentials wherever they appear (a payload, a header, a result).
_SECRET_KEYS = frozenset({"hottok", "x-hotmart-hottok", "authorization", "cookie", "set-cookie"})
# A form-encoded or broken-JSON body may carry the hottok; redact its value in text.
_HOTTOK_IN_TEXT = re.compile(r"""(hottok["']?\s*[=:]\s*["']?)[^&"'\s,}]*""", re.IGNORECASE)


# --- redaction ------------------------------------------------------------------------


class Redactor:
    """Replaces known secret strings (configured tokens, onboarding codes) and secret keys."""

    def __init__(self, secrets: Iterable[str | None] = ()):
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    @classmethod
    def for_settings(cls, settings: Settings, extra: Iterable[str | None] = ()) -> Redactor:
        configured = (
            settings.hotmart_hottok,
            settings.admin_api_token,
            settings.discord_bot_token,
            settings.manychat_api_token,
        )
        return cls([*(s.get_secret_value() for s in configured), *extra])

    def text(self, value: str | None) -> str | None:
        if not value:
            return value
        for secret in self.secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return _HOTTOK_IN_TEXT.sub(lambda m: m.group(1) + REDACTED, value) if "hottok" in value.lower() else value

    def __call__(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {
                key: REDACTED if isinstance(key, str) and key.lower() in _SECRET_KEYS else self(item)
                for key, item in value.items()
            }
        if isinstance(value, list | tuple):
            return [self(item) for item in value]
        return value


def student_codes(session: Session, student_ids: Iterable[int | None]) -> list[str]:
    ids = {i for i in student_ids if i is not None}
    if not ids:
        return []
    return list(session.scalars(select(OnboardingToken.code).where(OnboardingToken.student_id.in_(ids))))


def planned_codes(runs: Sequence[ActionRun], plans: Any) -> list[str]:
    """Secret parameters (the code an issue_token step carries), whether or not the step has run yet."""
    steps: list[tuple[Any, Any]] = [(run.action, run.params) for run in runs]
    for plan in plans if isinstance(plans, list) else []:
        planned = plan.get("steps") if isinstance(plan, dict) else None
        for step in planned if isinstance(planned, list) else []:
            if isinstance(step, dict):
                steps.append((step.get("action"), step.get("params")))
    codes = []
    for action, params in steps:
        if isinstance(action, str) and action in ACTIONS and isinstance(params, dict):
            codes += [params.get(name) for name in ACTIONS[action].secret_params]
    return [c for c in codes if isinstance(c, str) and c != TOKEN_PLACEHOLDER]


# --- queries ---------------------------------------------------------------------------


def aware(value: datetime | None) -> datetime | None:
    """Query datetimes without a zone are taken as UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def email_key(email: str) -> str:
    return email.strip().lower()


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


def event_summary(event: Event, redact: Redactor) -> schemas.EventSummary:
    return schemas.EventSummary.model_validate(event, context={"redact": redact})


def event_detail(event: Event, alerts: Iterable[tuple[Alert, str | None]], redact: Redactor) -> schemas.EventDetail:
    """The event with its steps (``event.action_runs``) and its alerts (with their student's e-mail)."""
    detail = schemas.EventDetail.model_validate(event, context={"redact": redact})
    return detail.model_copy(update={"alerts": [alert_out(alert, email, redact) for alert, email in alerts]})


def alert_out(alert: Alert, student_email: str | None, redact: Redactor) -> schemas.AlertOut:
    out = schemas.AlertOut.model_validate(alert, context={"redact": redact})
    return out.model_copy(update={"student_email": student_email})


def step_out(run: ActionRun, redact: Redactor) -> schemas.StepOut:
    return schemas.StepOut.model_validate(run, context={"redact": redact})


def student_detail(
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
