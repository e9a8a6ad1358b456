"""Admin API: read the event log, retry failed events, find stuck students, handle alerts.

Every route needs ``Authorization: Bearer $ADMIN_API_TOKEN``. Lists are paginated with
``limit`` / ``offset`` and answer ``{"items": [...], "total", "limit", "offset"}``.
Secrets never leave: the hottok and other configured tokens are redacted wherever they
could appear, and onboarding codes are never shown (only when they were issued and expire).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, HTTPException, Path, Query, status
from fastapi.exceptions import RequestValidationError

from engine.api.deps import ADMIN_RESPONSES, AdminDep, Offset, RuntimeDep, SessionDep
from engine.api.docs import rules_enum
from engine.service import alerts, events, replays, schemas, students
from engine.service.code_request import request_code
from engine.service.retry import RetryRefused, retry_event
from engine.service.schemas import MAX_ID, PRINTABLE, QueryDate
from engine.statuses import EventStatus

router = APIRouter(prefix="/admin", tags=["admin"])

MAX_LIMIT = 500
MAX_STUCK_DAYS = 36500

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"Page size (max {MAX_LIMIT}).")]


def _id(what: str) -> Any:
    return Path(ge=1, le=MAX_ID, description=f"The {what}'s id.")


def _text(description: str, max_length: int) -> Any:
    return Query(description=description, pattern=PRINTABLE, max_length=max_length)


def _defined_by_rules(values: str, description: str, max_length: int) -> Any:
    """A filter on one of the rules' ``states`` or ``products``: the schema lists them (see
    :func:`engine.api.docs.add_rules_enums`), and the service refuses any other."""
    return Query(
        description=description,
        pattern=PRINTABLE,
        min_length=1,
        max_length=max_length,
        json_schema_extra=rules_enum(values),
    )


_UNAUTHORIZED = ADMIN_RESPONSES
_NOT_FOUND = {404: {"description": "not found"}}


# --- events ---------------------------------------------------------------------------


@router.get("/events", summary="List events, newest first", response_model=schemas.EventPage, responses=_UNAUTHORIZED)
def list_events(
    _: AdminDep,
    rt: RuntimeDep,
    session: SessionDep,
    status_: Annotated[EventStatus | None, Query(alias="status")] = None,
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
    return events.event_page(
        session,
        rt.settings,
        status=status_,
        type=type_,
        email=email,
        since=since,
        until=until,
        limit=limit,
        offset=offset,
    )


@router.get(
    "/events/{event_id}",
    summary="One event: payload, plans, steps and alerts",
    response_model=schemas.EventDetail,
    responses={**_UNAUTHORIZED, **_NOT_FOUND},
)
def get_event(
    _: AdminDep, rt: RuntimeDep, session: SessionDep, event_id: Annotated[int, _id("event")]
) -> schemas.EventDetail:
    detail = events.event_detail(session, rt.settings, event_id)
    if detail is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"event {event_id} not found")
    return detail


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
    responses={
        **_UNAUTHORIZED,
        **_NOT_FOUND,
        400: {"description": "the body is not JSON text (e.g. not UTF-8)"},
        409: {"description": "no valid rules are loaded"},
    },
)
def replay_events(
    _: AdminDep, rt: RuntimeDep, body: Annotated[schemas.ReplayIn | None, Body()] = None
) -> schemas.ReplayOut:
    """Each replayed event is queued for the workers and recorded in the history (actor
    ``admin-api``, the rules version); ``dry_run`` plans each one and keeps nothing.
    No body: replay every needs_attention event."""
    body = body or schemas.ReplayIn()
    try:
        ids = replays.choose_events(rt, status=body.status, event_type=body.type, since=body.since, ids=body.event_ids)
    except replays.RulesUnavailable as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, f"rules cannot be loaded: {exc}") from exc
    try:
        results = replays.replay_events(rt, ids, dry_run=body.dry_run, actor="admin-api")
    except LookupError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    return replays.replay_out(rt, results, dry_run=body.dry_run)


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
    state: Annotated[
        str | None, _defined_by_rules("states", "A membership in this lifecycle state (one the rules define).", 50)
    ] = None,
    product: Annotated[
        str | None, _defined_by_rules("products", "A membership of this product key (one the rules define).", 100)
    ] = None,
    stuck_days: Annotated[
        int | None,
        Query(
            ge=0,
            le=MAX_STUCK_DAYS,
            description="A membership waiting for the Discord link (in pending_onboarding, under the shipped "
            "rules) for more than this many days.",
        ),
    ] = None,
    q: Annotated[
        str | None,
        _text(
            "Search: part of the e-mail, of the name (any case, accents or not) or of the phone (its digits); "
            "the Discord id or a transaction (exact).",
            students.SEARCH_MAX_LENGTH,
        ),
    ] = None,
    linked: Annotated[
        bool | None, Query(description="true: the student linked Discord (/registrar); false: not yet.")
    ] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> schemas.StudentPage:
    rules = rt.rules.rules
    _one_of("state", state, rules.states)
    _one_of("product", product, rules.products)
    return students.student_page(
        session,
        rules,
        search=q,
        state=state,
        product=product,
        stuck_days=stuck_days,
        linked=linked,
        now=rt.now(),
        limit=limit,
        offset=offset,
    )


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
    detail = students.student_detail(session, rt.settings, email, history_limit=history_limit, now=rt.now())
    if detail is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "student not found")
    return detail


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
    return alerts.alert_page(session, rt.settings, acknowledged=_ACKNOWLEDGED[acknowledged], limit=limit, offset=offset)


@router.post(
    "/alerts/{alert_id}/ack",
    summary="Acknowledge an alert (idempotent)",
    response_model=schemas.AlertOut,
    responses={**_UNAUTHORIZED, **_NOT_FOUND},
)
def ack_alert(
    _: AdminDep, rt: RuntimeDep, session: SessionDep, alert_id: Annotated[int, _id("alert")]
) -> schemas.AlertOut:
    acknowledged = alerts.acknowledge_alert(session, rt.settings, alert_id, now=rt.now())
    if acknowledged is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"alert {alert_id} not found")
    return acknowledged
