"""Admin API: read the event log, retry failed events, find stuck students, handle alerts.

Every route needs ``Authorization: Bearer $ADMIN_API_TOKEN``. Lists are paginated with
``limit`` / ``offset`` and answer ``{"items": [...], "total", "limit", "offset"}``.
Secrets never leave: the hottok and other configured tokens are redacted wherever they
could appear, and onboarding codes are never shown (only when they were issued and expire).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, HTTPException, Path, Query, status
from fastapi.exceptions import RequestValidationError
from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session, selectinload

from engine.api import schemas
from engine.api.deps import AdminDep, RuntimeDep, SessionDep
from engine.api.schemas import MAX_ID, PRINTABLE, QueryDate
from engine.db.models import (
    ActionRun,
    Alert,
    Event,
    Grant,
    Membership,
    OnboardingToken,
    ScheduledEvent,
    Student,
)
from engine.pipeline.admin import RetryRefused, request_code, retry_event
from engine.settings import Settings

router = APIRouter(prefix="/admin", tags=["admin"])

MAX_LIMIT = 500
REDACTED = "[redacted]"
# Keys whose values are credentials wherever they appear (a payload, a header, a result).
_SECRET_KEYS = frozenset({"hottok", "x-hotmart-hottok", "authorization", "cookie", "set-cookie"})
# A form-encoded or broken-JSON body may carry the hottok; redact its value in text.
_HOTTOK_IN_TEXT = re.compile(r"""(hottok["']?\s*[=:]\s*["']?)[^&"'\s,}]*""", re.IGNORECASE)

MAX_STUCK_DAYS = 36500

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"Page size (max {MAX_LIMIT}).")]
Offset = Annotated[int, Query(ge=0, le=MAX_ID, description="Rows to skip.")]


def _id(what: str) -> Any:
    return Path(ge=1, le=MAX_ID, description=f"The {what}'s id.")


def _text(description: str, max_length: int) -> Any:
    return Query(description=description, pattern=PRINTABLE, max_length=max_length)


_UNAUTHORIZED = {401: {"description": "missing or invalid admin token"}}
_NOT_FOUND = {404: {"description": "not found"}}


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


def _student_codes(session: Session, student_ids: Iterable[int | None]) -> list[str]:
    ids = {i for i in student_ids if i is not None}
    if not ids:
        return []
    return list(session.scalars(select(OnboardingToken.code).where(OnboardingToken.student_id.in_(ids))))


def _planned_codes(runs: Sequence[ActionRun], plans: Any) -> list[str]:
    """Codes an issue_token step carries, whether or not the step has run yet."""
    codes = [run.params.get("code") for run in runs if run.action == "issue_token"]
    for plan in plans if isinstance(plans, list) else []:
        steps = plan.get("steps") if isinstance(plan, dict) else None
        for step in steps if isinstance(steps, list) else []:
            if isinstance(step, dict) and step.get("action") == "issue_token":
                codes.append((step.get("params") or {}).get("code"))
    return [c for c in codes if isinstance(c, str) and c != "{token}"]


# --- shared queries (the CLI uses them too) -------------------------------------------


def _aware(value: datetime | None) -> datetime | None:
    """Query datetimes without a zone are taken as UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _email_key(email: str) -> str:
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
        key = _email_key(email)
        # E-mails are stored lower-cased (intake and students); an event of the student may
        # also be known only by its student id.
        conditions.append(or_(Event.email == key, Event.student_id.in_(select(Student.id).where(Student.email == key))))
    if since is not None:
        conditions.append(Event.received_at >= _aware(since))
    if until is not None:
        conditions.append(Event.received_at < _aware(until))
    return conditions


def query_events(session: Session, *, limit: int = 50, offset: int = 0, **filters: Any) -> tuple[list[Event], int]:
    """Events matching ``filters`` (see :func:`event_filters`), newest first, and their total."""
    conditions = event_filters(**filters)
    total = session.scalar(select(func.count()).select_from(Event).where(*conditions)) or 0
    rows = session.scalars(select(Event).where(*conditions).order_by(Event.id.desc()).limit(limit).offset(offset))
    return list(rows), total


def event_summary(event: Event, redact: Redactor) -> schemas.EventSummary:
    return schemas.EventSummary(
        id=event.id,
        source=event.source,
        type=event.type,
        status=event.status,
        reason=redact.text(event.reason),
        email=event.email,
        student_id=event.student_id,
        product=event.product_key,
        received_at=event.received_at,
        occurred_at=event.occurred_at,
        processed_at=event.processed_at,
    )


def _alert_out(alert: Alert, student_email: str | None, redact: Redactor) -> schemas.AlertOut:
    return schemas.AlertOut(
        id=alert.id,
        kind=alert.kind,
        message=redact.text(alert.message) or "",
        event_id=alert.event_id,
        action_run_id=alert.action_run_id,
        student_id=alert.student_id,
        student_email=student_email,
        created_at=alert.created_at,
        notified=alert.notified,
        acknowledged_at=alert.acknowledged_at,
        group_key=alert.group_key,
        count=alert.count or 1,
        last_seen_at=alert.last_seen_at,
    )


def _step_out(run: ActionRun, redact: Redactor) -> schemas.StepOut:
    return schemas.StepOut(
        id=run.id,
        step_index=run.step_index,
        action=run.action,
        params=redact(run.params or {}),
        membership_id=run.membership_id,
        status=run.status,
        attempts=run.attempts,
        error=run.error,
        detail=redact.text(run.detail),
        result=redact(run.result),
        retry_at=run.retry_at,
        created_at=run.created_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
    )


# --- events ---------------------------------------------------------------------------


@router.get("/events", summary="List events, newest first", response_model=schemas.EventPage, responses=_UNAUTHORIZED)
def list_events(
    _: AdminDep,
    rt: RuntimeDep,
    session: SessionDep,
    status_: Annotated[schemas.EventStatus | None, Query(alias="status")] = None,
    type_: Annotated[
        str | None,
        Query(alias="type", description="Event type, e.g. PURCHASE_APPROVED.", pattern=PRINTABLE, max_length=60),
    ] = None,
    email: Annotated[str | None, _text("The student's e-mail (case-insensitive).", 320)] = None,
    since: Annotated[QueryDate, Query(description="received_at >= since (ISO 8601; no zone = UTC).")] = None,
    until: Annotated[QueryDate, Query(description="received_at < until (ISO 8601; no zone = UTC).")] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> schemas.EventPage:
    events, total = query_events(
        session, status=status_, type=type_, email=email, since=since, until=until, limit=limit, offset=offset
    )
    redact = Redactor.for_settings(rt.settings)
    return schemas.EventPage(items=[event_summary(e, redact) for e in events], total=total, limit=limit, offset=offset)


@router.get(
    "/events/{event_id}",
    summary="One event: payload, plans, steps and alerts",
    response_model=schemas.EventDetail,
    responses={**_UNAUTHORIZED, **_NOT_FOUND},
)
def get_event(
    _: AdminDep, rt: RuntimeDep, session: SessionDep, event_id: Annotated[int, _id("event")]
) -> schemas.EventDetail:
    event = session.get(Event, event_id)
    if event is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"event {event_id} not found")
    runs = list(session.scalars(select(ActionRun).where(ActionRun.event_id == event_id).order_by(ActionRun.step_index)))
    alerts = session.execute(
        select(Alert, Student.email)
        .outerjoin(Student, Alert.student_id == Student.id)
        .where(Alert.event_id == event_id)
        .order_by(Alert.id.desc())
    ).all()
    codes = _student_codes(session, [event.student_id]) + _planned_codes(runs, event.plans)
    redact = Redactor.for_settings(rt.settings, codes)
    summary = event_summary(event, redact)
    return schemas.EventDetail(
        **summary.model_dump(),
        dedupe_key=event.dedupe_key,
        correlation_id=event.correlation_id,
        enqueued_at=event.enqueued_at,
        payload=redact(event.payload),
        raw_body=redact.text(event.raw_body),
        payload_changes=event.payload_changes,
        headers=redact(event.headers),
        plans=redact(event.plans),
        rules_version=event.rules_version,
        failures=event.failures or 0,
        steps=[_step_out(run, redact) for run in runs],
        alerts=[_alert_out(alert, email, redact) for alert, email in alerts],
    )


@router.post(
    "/events/{event_id}/retry",
    summary="Retry a failed (or stuck) event from its failed step",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=schemas.RetryOut,
    responses={
        **_UNAUTHORIZED,
        **_NOT_FOUND,
        409: {"description": "refused: the event is processed/ignored/held, or was overtaken (use force)"},
    },
)
def retry(
    _: AdminDep,
    rt: RuntimeDep,
    event_id: Annotated[int, _id("event")],
    force: Annotated[
        bool, Query(description="Resume even if a later event changed the membership since (may undo it).")
    ] = False,
    skipped: Annotated[
        bool, Query(description="Also replay steps skipped because a connector's flag was off.")
    ] = False,
) -> schemas.RetryOut:
    try:
        outcome = retry_event(rt, event_id, force=force, skipped=skipped, actor="admin-api")
    except RetryRefused as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    except LookupError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    return schemas.RetryOut(status=outcome)


@router.post(
    "/replay",
    summary="Replay stored events (default: all needs_attention) against the current rules",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=schemas.ReplayOut,
    responses={**_UNAUTHORIZED, **_NOT_FOUND, 409: {"description": "no valid rules are loaded"}},
)
def replay_events(
    _: AdminDep, rt: RuntimeDep, body: Annotated[schemas.ReplayIn | None, Body()] = None
) -> schemas.ReplayOut:
    """Each replayed event is queued for the workers and recorded in the history (actor
    ``admin-api``, the rules version); ``dry_run`` plans each one and keeps nothing.
    No body: replay every needs_attention event."""
    from engine.pipeline import replay

    body = body or schemas.ReplayIn()
    rt.rules.reload_if_changed()
    if not rt.rules.available:
        raise HTTPException(status.HTTP_409_CONFLICT, f"rules cannot be loaded: {rt.rules.load_error}")
    with rt.sessions() as session:
        ids = replay.select_events(
            session, status=body.status, event_type=body.type, since=body.since, ids=body.event_ids
        )
    try:
        results = replay.preview(rt, ids) if body.dry_run else replay.replay(rt, ids, actor="admin-api")
    except LookupError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    redact = Redactor.for_settings(rt.settings)
    return schemas.ReplayOut(
        dry_run=body.dry_run,
        rules_version=rt.rules.version,
        count=len(results),
        summary=replay.summarize(results),
        items=[schemas.ReplayItem(**{**r.to_dict(), "reason": redact.text(r.reason)}) for r in results],
    )


# --- students -------------------------------------------------------------------------


@router.post(
    "/students/{email}/code",
    summary="Send the student a new /registrar code for one product (the old one stops working)",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=schemas.CodeRequestOut,
    responses={**_UNAUTHORIZED, **_NOT_FOUND},
)
def new_code(
    _: AdminDep,
    rt: RuntimeDep,
    email: Annotated[str, Path(description="The student's e-mail.", pattern=PRINTABLE, max_length=320)],
    product: Annotated[str, _text("The product key of the membership, e.g. curso.", 100)],
) -> schemas.CodeRequestOut:
    try:
        event_id = request_code(rt, email, product)
    except LookupError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    return schemas.CodeRequestOut(status="queued", event_id=event_id)


@router.get(
    "/students",
    summary="List students (filter by state, product, stuck)",
    response_model=schemas.StudentPage,
    responses=_UNAUTHORIZED,
)
def list_students(
    _: AdminDep,
    rt: RuntimeDep,
    session: SessionDep,
    state: Annotated[str | None, _text("A membership in this lifecycle state (one the rules define).", 50)] = None,
    product: Annotated[str | None, _text("A membership of this product key (one the rules define).", 100)] = None,
    stuck_days: Annotated[
        int | None,
        Query(ge=0, le=MAX_STUCK_DAYS, description="A membership in pending_onboarding for more than this many days."),
    ] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> schemas.StudentPage:
    rules = rt.rules.rules
    _one_of("state", state, rules.states)
    _one_of("product", product, rules.products)
    # All filters apply to the same membership ("a curso membership that is active").
    conditions: list[ColumnElement[bool]] = []
    if state:
        conditions.append(Membership.state == state)
    if product:
        conditions.append(Membership.product_key == product)
    if stuck_days is not None:
        conditions.append(Membership.state == "pending_onboarding")
        conditions.append(Membership.state_changed_at < rt.now() - timedelta(days=stuck_days))
    query = select(Student)
    if conditions:
        query = query.where(Student.id.in_(select(Membership.student_id).where(*conditions)))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    students = session.scalars(
        query.options(selectinload(Student.memberships)).order_by(Student.id.desc()).limit(limit).offset(offset)
    ).all()
    items = [
        schemas.StudentSummary(
            id=s.id,
            email=s.email,
            name=s.name,
            discord_id=s.discord_id,
            discord_linked=s.discord_id is not None,
            memberships=[
                schemas.MembershipBrief(product=m.product_key, state=m.state, since=m.state_changed_at)
                for m in s.memberships
            ],
            created_at=s.created_at,
        )
        for s in students
    ]
    return schemas.StudentPage(items=items, total=total, limit=limit, offset=offset)


@router.get(
    "/students/{email}",
    summary="One student: memberships, grants, timers, open codes, history",
    response_model=schemas.StudentDetail,
    responses={**_UNAUTHORIZED, **_NOT_FOUND},
)
def get_student(
    _: AdminDep,
    rt: RuntimeDep,
    session: SessionDep,
    email: Annotated[
        str, Path(description="The student's e-mail (case-insensitive).", pattern=PRINTABLE, max_length=320)
    ],
    history_limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Newest events to include.")] = 50,
) -> schemas.StudentDetail:
    student = session.scalar(
        select(Student).options(selectinload(Student.memberships)).where(Student.email == _email_key(email))
    )
    if student is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "student not found")
    products = {m.id: m.product_key for m in student.memberships}
    grants = session.scalars(select(Grant).where(Grant.student_id == student.id).order_by(Grant.id)).all()
    timers = session.scalars(
        select(ScheduledEvent)
        .join(Membership, ScheduledEvent.membership_id == Membership.id)
        .where(Membership.student_id == student.id, ScheduledEvent.status == "pending")
        .order_by(ScheduledEvent.due_at, ScheduledEvent.id)
    ).all()
    codes = session.scalars(
        select(OnboardingToken)
        .where(*OnboardingToken.unspent(student.id), OnboardingToken.expires_at > rt.now())
        .order_by(OnboardingToken.created_at.desc(), OnboardingToken.id.desc())
    ).all()
    mine = or_(Event.student_id == student.id, Event.email == student.email)
    history_total = session.scalar(select(func.count()).select_from(Event).where(mine)) or 0
    history = session.scalars(select(Event).where(mine).order_by(Event.id.desc()).limit(history_limit)).all()
    redact = Redactor.for_settings(rt.settings, _student_codes(session, [student.id]))
    return schemas.StudentDetail(
        id=student.id,
        email=student.email,
        name=student.name,
        phone=student.phone,
        discord_id=student.discord_id,
        discord_linked=student.discord_id is not None,
        previous_discord_id=student.previous_discord_id,
        manychat_subscriber_id=student.manychat_subscriber_id,
        created_at=student.created_at,
        updated_at=student.updated_at,
        memberships=[
            schemas.MembershipOut(
                id=m.id,
                product=m.product_key,
                state=m.state,
                since=m.state_changed_at,
                paid_until=m.paid_until,
                transaction=m.transaction,
                subscriber_code=m.subscriber_code,
                last_event_at=m.last_event_at,
                last_event_id=m.last_event_id,
                created_at=m.created_at,
            )
            for m in student.memberships
        ],
        grants=[
            schemas.GrantOut(
                id=g.id,
                product=products.get(g.membership_id),
                membership_id=g.membership_id,
                kind=g.kind,
                resource=g.resource,
                applied=g.applied,
                created_at=g.created_at,
            )
            for g in grants
        ],
        pending_timers=[
            schemas.TimerOut(
                id=t.id,
                product=products.get(t.membership_id),
                membership_id=t.membership_id,
                event_type=t.event_type,
                due_at=t.due_at,
                created_by_event_id=t.created_by_event_id,
                created_at=t.created_at,
            )
            for t in timers
        ],
        open_codes=[
            schemas.OnboardingCodeOut(
                id=c.id,
                product=products.get(c.membership_id) if c.membership_id else None,
                membership_id=c.membership_id,
                created_at=c.created_at,
                expires_at=c.expires_at,
            )
            for c in codes
        ],
        history=[
            schemas.HistoryItem(
                id=e.id,
                source=e.source,
                type=e.type,
                status=e.status,
                reason=redact.text(e.reason),
                product=e.product_key,
                received_at=e.received_at,
                occurred_at=e.occurred_at,
                processed_at=e.processed_at,
            )
            for e in history
        ],
        history_total=history_total,
    )


# --- alerts ---------------------------------------------------------------------------


_ACKNOWLEDGED = {
    "false": False,
    "0": False,
    "no": False,
    "true": True,
    "1": True,
    "yes": True,
    "any": None,
    "all": None,
}


def _one_of(name: str, value: str | None, allowed: Iterable[str]) -> None:
    """An enumerated filter the rules define: an unknown value is the same 422 as a bad enum."""
    if value is not None and value not in allowed:
        choices = ", ".join(sorted(allowed))
        raise RequestValidationError(
            [{"type": "enum", "loc": ("query", name), "msg": f"Input should be one of: {choices}", "input": value}]
        )


@router.get("/alerts", summary="List alerts, newest first", response_model=schemas.AlertPage, responses=_UNAUTHORIZED)
def list_alerts(
    _: AdminDep,
    rt: RuntimeDep,
    session: SessionDep,
    acknowledged: Annotated[
        Literal["false", "0", "no", "true", "1", "yes", "any", "all"],
        Query(description="false (default): open alerts; true: acknowledged ones; any: all."),
    ] = "false",
    limit: Limit = 50,
    offset: Offset = 0,
) -> schemas.AlertPage:
    wanted = _ACKNOWLEDGED[acknowledged]
    conditions: list[ColumnElement[bool]] = []
    if wanted is True:
        conditions.append(Alert.acknowledged_at.is_not(None))
    elif wanted is False:
        conditions.append(Alert.acknowledged_at.is_(None))
    total = session.scalar(select(func.count()).select_from(Alert).where(*conditions)) or 0
    rows = session.execute(
        select(Alert, Student.email)
        .outerjoin(Student, Alert.student_id == Student.id)
        .where(*conditions)
        .order_by(Alert.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    redact = Redactor.for_settings(rt.settings, _student_codes(session, [alert.student_id for alert, _ in rows]))
    return schemas.AlertPage(
        items=[_alert_out(alert, email, redact) for alert, email in rows], total=total, limit=limit, offset=offset
    )


@router.post(
    "/alerts/{alert_id}/ack",
    summary="Acknowledge an alert (idempotent)",
    response_model=schemas.AlertOut,
    responses={**_UNAUTHORIZED, **_NOT_FOUND},
)
def ack_alert(
    _: AdminDep, rt: RuntimeDep, session: SessionDep, alert_id: Annotated[int, _id("alert")]
) -> schemas.AlertOut:
    alert = session.get(Alert, alert_id, with_for_update=True)
    if alert is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"alert {alert_id} not found")
    if alert.acknowledged_at is None:
        alert.acknowledged_at = rt.now()
    session.commit()
    email = session.scalar(select(Student.email).where(Student.id == alert.student_id)) if alert.student_id else None
    redact = Redactor.for_settings(rt.settings, _student_codes(session, [alert.student_id]))
    return _alert_out(alert, email, redact)
