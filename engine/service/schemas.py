"""Response models of the admin API (so ``/docs`` documents every shape).

Built from database rows (``from_attributes``). Secrets never appear here: headers were
stripped at intake, and every field a secret could reach is declared :data:`Redacted`, so
validating with ``context={"redact": redactor}`` removes the hottok and onboarding codes.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, StrictBool, ValidationInfo, computed_field
from pydantic.functional_validators import AfterValidator, BeforeValidator

from engine.statuses import EventStatus


def _redact(value: Any, info: ValidationInfo) -> Any:
    redact = (info.context or {}).get("redact")
    return redact(value) if redact is not None else value


Redacted = AfterValidator(_redact)


def _column(name: str, field: str) -> Any:
    """A field read from a column of another name (``product`` from ``product_key``)."""
    return AliasChoices(name, field)


class Row(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# What a client sends is bounded before it reaches the database: ids are integers any JSON client
# reads exactly (at most 2**53 - 1, JavaScript's largest safe integer; a BIGINT holds them), text
# has no NUL or control character (PostgreSQL text cannot hold NUL), dates have a UTC equivalent.
MAX_ID = 2**53 - 1
PRINTABLE = r"^[^\x00-\x1f\x7f]*$"


def utc_representable(value: datetime | None) -> datetime | None:
    """A date the database can compare with (year 1 at +01:00 has no UTC equivalent); no zone = UTC."""
    if value is not None:
        try:
            (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
        except OverflowError:
            raise ValueError("date out of range once converted to UTC") from None
    return value


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def not_a_timestamp(value: Any) -> Any:
    """Dates are ISO 8601 text, as the schema's ``date-time`` says: pydantic alone would also read a
    number (or ``"0.5"``) as a Unix timestamp."""
    if isinstance(value, int | float) or (isinstance(value, str) and _NUMBER.fullmatch(value.strip())):
        raise ValueError("expected an ISO 8601 date-time, not a number")
    return value


QueryDate = Annotated[datetime | None, BeforeValidator(not_a_timestamp), AfterValidator(utc_representable)]


def not_a_bool(value: Any) -> Any:
    """JSON ``true`` is not an integer (pydantic alone would read it as 1)."""
    if isinstance(value, bool):
        raise ValueError("expected an integer, not a boolean")
    return value


EventId = Annotated[int, Field(ge=1, le=MAX_ID), BeforeValidator(not_a_bool)]


class Page(BaseModel):
    total: int = Field(description="Rows matching the filters (all pages).")
    limit: int
    offset: int


# --- events ---------------------------------------------------------------------------


class EventSummary(Row):
    id: int
    source: str = Field(description="hotmart | bot | timer | admin")
    origin: str | None = Field(
        None,
        description="hotmart-api: stored by `engine sync hotmart`, a change Hotmart's API showed that no "
        "webhook brought (processed as that webhook); null: a webhook, or the engine's own event.",
    )
    type: str | None
    status: str
    reason: Annotated[str | None, Redacted]
    email: str | None
    student_id: int | None
    product: str | None = Field(
        description="Product key in the rules (set once the event is planned).",
        validation_alias=_column("product_key", "product"),
    )
    received_at: datetime
    occurred_at: datetime | None = Field(description="Hotmart's creation_date (or when the engine raised it).")
    processed_at: datetime | None


class EventPage(Page):
    items: list[EventSummary]


class StepOut(Row):
    """One planned step (an ``action_runs`` row)."""

    id: int
    step_index: int
    action: str
    params: Annotated[dict[str, Any], Redacted]
    membership_id: int | None
    status: str = Field(description="pending | running | retrying | done | skipped | failed")
    attempts: int
    error: str | None
    detail: Annotated[str | None, Redacted]
    result: Annotated[dict[str, Any] | None, Redacted]
    retry_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class AlertOut(Row):
    id: int
    kind: str
    message: Annotated[str, Redacted]
    event_id: int | None
    action_run_id: int | None
    student_id: int | None
    student_email: str | None = None  # joined from the student
    created_at: datetime
    notified: str | None = Field(description="Discord admin-channel delivery: done | skipped | failed | null (not yet)")
    acknowledged_at: datetime | None
    group_key: str | None = Field(None, description="The cause: later occurrences count here instead of new alerts.")
    count: int = Field(1, description="Occurrences of the cause while the alert is open.")
    last_seen_at: datetime | None = None


class AlertPage(Page):
    items: list[AlertOut]


class EventDetail(EventSummary):
    dedupe_key: str
    correlation_id: str
    transaction: str | None = Field(None, description="The platform's purchase code, when the event has one.")
    enqueued_at: datetime | None = Field(
        description="Last handed to the workers (stored, released, replayed, retried, or requeued by the sweep "
        "after STUCK_AFTER_SECONDS unfinished); null while held."
    )
    payload: Annotated[Any, Redacted] = Field(description="The raw JSON body (hottok redacted).")
    raw_body: Annotated[str | None, Redacted] = Field(description="The body as received, when it was not JSON.")
    payload_changes: list[str] | None = Field(
        default=None,
        description="What was changed so the payload could be stored (NUL, lone surrogates, non-finite "
        "numbers); the bytes as received are kept.",
    )
    headers: Annotated[dict[str, Any] | None, Redacted] = Field(description="Request headers, without credentials.")
    plans: Annotated[Any, Redacted] = Field(
        description="One plan per membership touched: transition, conditions, steps."
    )
    rules_version: str | None = Field(
        None, description="The rules version that decided it: content hash, @git commit when known."
    )
    failures: int = Field(0, description="Worker exceptions on this event (needs_attention at WORKER_MAX_FAILURES).")
    steps: list[StepOut] = Field(default_factory=list, validation_alias=_column("action_runs", "steps"))
    alerts: list[AlertOut] = Field(default_factory=list)


class RetryOut(BaseModel):
    status: Literal["queued"]


class ReplayIn(BaseModel):
    """Which events to replay: those matching the filters, plus any named by id."""

    status: EventStatus | None = Field(
        EventStatus.NEEDS_ATTENTION, description="Events in this status (null: only the ids named)."
    )
    type: str | None = Field(None, description="Only this event type.", max_length=60, pattern=PRINTABLE)
    since: QueryDate = Field(None, description="received_at >= since (ISO 8601; no zone = UTC).")
    event_ids: list[EventId] = Field(
        default_factory=list, max_length=10_000, description="Stored events to replay whatever their status."
    )
    dry_run: StrictBool = Field(False, description="Only say what each replay would decide; change nothing.")


class ReplayItem(BaseModel):
    event_id: int
    type: str | None
    before: str
    after: str = Field(description="received (queued for the workers), or the decision with dry_run.")
    reason: str | None
    rules_version: str | None
    refused: bool = Field(
        False,
        description="Not replayed, reason says why: the event is still in flight, or its steps came from a "
        "reconcile run (retry resumes them).",
    )


class ReplayOut(BaseModel):
    dry_run: bool
    rules_version: str | None = Field(description="The rules version the replays are decided with.")
    count: int
    summary: dict[str, int] = Field(description="Outcome -> events (refused: not replayed).")
    items: list[ReplayItem]


# --- students -------------------------------------------------------------------------


class MembershipBrief(Row):
    product: str = Field(validation_alias=_column("product_key", "product"))
    state: str
    since: datetime = Field(
        description="When the membership entered its current state.",
        validation_alias=_column("state_changed_at", "since"),
    )


class Linked(Row):
    discord_id: str | None = Field(description="null until the student links Discord with /registrar.")

    @computed_field
    @property
    def discord_linked(self) -> bool:
        return self.discord_id is not None


class StudentSummary(Linked):
    id: int
    email: str
    name: str | None
    phone: str | None = Field(description="E.164, e.g. +5511999990001.")
    memberships: list[MembershipBrief]
    created_at: datetime


class StudentPage(Page):
    items: list[StudentSummary]


class MembershipOut(MembershipBrief):
    id: int
    paid_until: datetime | None
    transaction: str | None
    subscriber_code: str | None
    last_event_at: datetime | None
    last_event_id: int | None
    created_at: datetime


class GrantOut(Row):
    id: int
    product: str | None = None  # the membership's product key
    membership_id: int
    kind: str = Field(description="discord_role | manychat_tag | class")
    resource: str
    applied: bool = Field(description="false: wanted but not applied yet (e.g. waiting for the server join).")
    created_at: datetime


class TimerOut(Row):
    id: int
    product: str | None = None  # the membership's product key
    membership_id: int
    event_type: str
    due_at: datetime
    created_by_event_id: int | None
    created_at: datetime


class OnboardingCodeOut(Row):
    """An open (unused, unrevoked, unexpired) code. The code itself is never shown."""

    id: int
    product: str | None = None  # the membership's product key
    membership_id: int | None
    created_at: datetime
    expires_at: datetime


class HistoryItem(Row):
    id: int
    source: str
    type: str | None
    status: str
    reason: Annotated[str | None, Redacted]
    product: str | None = Field(validation_alias=_column("product_key", "product"))
    received_at: datetime
    occurred_at: datetime | None
    processed_at: datetime | None


class StudentDetail(Linked):
    id: int
    email: str
    name: str | None
    phone: str | None
    previous_discord_id: str | None
    manychat_subscriber_id: str | None
    created_at: datetime
    updated_at: datetime
    memberships: list[MembershipOut]
    grants: list[GrantOut] = Field(default_factory=list)
    pending_timers: list[TimerOut] = Field(default_factory=list)
    open_codes: list[OnboardingCodeOut] = Field(default_factory=list)
    history: list[HistoryItem] = Field(
        default_factory=list, description="The student's events, newest first (up to history_limit)."
    )
    history_total: int = 0


class CodeRequestOut(BaseModel):
    status: str
    event_id: int


class DoctorCheck(BaseModel):
    area: Literal["engine", "discord", "manychat", "classes", "hotmart"]
    status: Literal["ok", "warn", "FAIL"]
    message: str


class DoctorReport(BaseModel):
    ok: bool = Field(description="False when any check is FAIL.")
    checks: list[DoctorCheck]


# --- reconcile ------------------------------------------------------------------------


class ReconcileRunOut(BaseModel):
    """One ``engine reconcile`` run: what differed from the rules, and what was applied or held."""

    id: int
    started_at: datetime
    finished_at: datetime | None
    trigger: str = Field(description="cli | schedule | plan | page (the admin page)")
    mode: str = Field(description="report | grants (missing grants only) | all (guarded)")
    status: str = Field(description="running | reported | applied | held (blast-radius guard) | failed")
    students: int = Field(description="Students compared.")
    counts: dict[str, dict[str, int]] = Field(
        description="Per product: missing, extra, not_in_server, subscribers_not_found."
    )
    diff: dict[str, Any] | None = Field(description="The report: notes, totals and the lists (first 1,000 of each).")
    applied: dict[str, Any] | None = Field(description="Events queued, grants and revocations, or why held.")
    error: str | None


class ReconcileRunPage(Page):
    items: list[ReconcileRunOut]


# --- sync (engine sync hotmart) --------------------------------------------------------


class SyncRunOut(BaseModel):
    """One ``engine sync hotmart`` run: what Hotmart's API showed that no webhook brought, and what
    was stored for the pipeline or held back."""

    id: int
    source: str = Field(description="The platform read: hotmart.")
    started_at: datetime
    finished_at: datetime | None
    trigger: str = Field(description="cli | schedule | page (the admin page)")
    mode: str = Field(description="report | grants (approvals only) | all (guarded)")
    status: str = Field(description="running | reported | applied | held (blast-radius guard) | failed")
    since: datetime = Field(description="The sales read were ordered from here on.")
    counts: dict[str, dict[str, int]] = Field(description="Per product key: the changes found, by event type.")
    report: dict[str, Any] | None = Field(
        description="What was read per product id, totals by effect, what was passed over and why, notes, and "
        "the changes found (first 1,000): product, event_type, Hotmart's status, email, transaction, "
        "subscriber_code, occurred_at, effect (grants | ends | changes | none), from_state, to_state, change_key."
    )
    applied: dict[str, Any] | None = Field(
        description="The events stored (ids), duplicates (their webhook came meanwhile), left (not stored), "
        "or held by the guard (limit, alert_id)."
    )
    error: str | None


class SyncRunPage(Page):
    items: list[SyncRunOut]
