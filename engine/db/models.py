"""Tables (DESIGN section 5). PostgreSQL in production, SQLite as the embedded default."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from engine.statuses import EventStatus, RunStatus, TimerStatus

# JSONB on PostgreSQL (indexable, compact), plain JSON elsewhere.
JSONType = JSON().with_variant(JSONB(), "postgresql")
# SQLite only auto-increments INTEGER PRIMARY KEY.
BigID = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator):
    """Timezone-aware datetimes on every backend (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def utcnow() -> datetime:
    return datetime.now(UTC)


# The statuses still to be acted on, which the per-event queries look for (engine.statuses:
# open ones; a failed step holds its event's later steps). Partial indexes over them stay the size
# of what is open, whatever the history (migration 0010). Each also requires its key column, so
# that only a query on that key can use it (not one filtering on the status alone).
OPEN_EVENTS_WHERE = "status IN ('received', 'held', 'processing', 'retrying')"
OPEN_STEPS_WHERE = "status IN ('pending', 'running', 'retrying', 'failed')"


def partial_index(name: str, *columns: str, where: str) -> Index:
    """An index over the rows matching ``where``. Migration 0010 makes it partial on SQLite too;
    only PostgreSQL's predicate is declared here, as naming SQLite's would import SQLite's dialect
    in every process that imports the models (PostgreSQL's is imported already: JSONB)."""
    return Index(name, *columns, postgresql_where=text(where))


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSONType, datetime: UTCDateTime}


class Student(Base):
    __tablename__ = "students"

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)  # lower-cased
    name: Mapped[str | None] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(20))  # E.164
    discord_id: Mapped[str | None] = mapped_column(String(21), unique=True)
    previous_discord_id: Mapped[str | None] = mapped_column(String(21))
    manychat_subscriber_id: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    memberships: Mapped[list[Membership]] = relationship(back_populates="student", order_by="Membership.id")


class Membership(Base):
    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("student_id", "product_key"),)

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    student_id: Mapped[int] = mapped_column(ForeignKey("students.id"))
    product_key: Mapped[str] = mapped_column(String(100))
    state: Mapped[str] = mapped_column(String(50), index=True)
    transaction: Mapped[str | None] = mapped_column(String(64))
    subscriber_code: Mapped[str | None] = mapped_column(String(64))
    paid_until: Mapped[datetime | None]
    # creation_date of the newest Hotmart event applied: older ones are stale.
    last_event_at: Mapped[datetime | None]
    # The event whose plan last changed this membership: steps of older plans are superseded.
    last_event_id: Mapped[int | None] = mapped_column(BigInteger)
    state_changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    student: Mapped[Student] = relationship(back_populates="memberships")


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_status_id", "status", "id"),
        Index("ix_events_received_at", "received_at"),  # the admin API's date filters
        # Each platform's last webhook: the events `engine sync` stored from its API are not webhooks.
        partial_index("ix_events_source_received_at", "source", "received_at", where="origin IS NULL"),
        Index("ix_events_type_status", "type", "status"),  # type filters; /metrics counts by both
        Index("ix_events_transaction_type", "transaction", "type"),  # a purchase's refund
        # A change is applied once whichever way it came (migration 0018): see Event.change_key.
        Index("ix_events_change_key", "change_key"),
        Index("uq_events_api_change_key", "change_key", unique=True, postgresql_where=text("origin IS NOT NULL")),
        # A student's open events (the worker's next step), a buyer's fresh webhooks (settling),
        # the oldest unprocessed one (/metrics, engine status, the watchdog).
        partial_index(
            "ix_events_open_student", "student_id", "id", where=f"{OPEN_EVENTS_WHERE} AND student_id IS NOT NULL"
        ),
        partial_index("ix_events_open_email", "email", where=f"{OPEN_EVENTS_WHERE} AND email IS NOT NULL"),
        partial_index(
            "ix_events_open_received", "received_at", "id", where=f"{OPEN_EVENTS_WHERE} AND received_at IS NOT NULL"
        ),
    )

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    source: Mapped[str] = mapped_column(String(20))  # hotmart | bot | timer | admin
    # None: a webhook (or the engine's own event); "hotmart-api": stored by `engine sync hotmart`, a
    # change the platform's API showed that no webhook brought. Not a webhook: the silence check skips it.
    origin: Mapped[str | None] = mapped_column(String(20))
    type: Mapped[str | None] = mapped_column(String(60))
    dedupe_key: Mapped[str] = mapped_column(String(100), unique=True)
    # The change the event makes (a purchase's status, a subscription's cancellation: the source's
    # change_key), the same whether a webhook or the sync brought it: the second of a webhook and a
    # sync event of one change is a duplicate, never applied twice. Two webhooks of one change are
    # both kept, as before change keys: their creation dates order them. None: no key (older events).
    change_key: Mapped[str | None] = mapped_column(String(100))
    payload: Mapped[Any] = mapped_column(JSONType, nullable=True)  # the raw body, any JSON value
    raw_body: Mapped[str | None] = mapped_column(Text)  # kept when the body is not JSON
    # The bytes as received (hottok removed) when the body is not JSON, or when the payload had
    # to be changed to fit jsonb (payload_changes says how). Insert-only, like the payload.
    raw_bytes: Mapped[bytes | None] = mapped_column(LargeBinary)
    payload_changes: Mapped[Any] = mapped_column(JSONType, nullable=True)
    headers: Mapped[dict[str, Any] | None]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    occurred_at: Mapped[datetime | None]  # Hotmart's creation_date
    # received | held | processing | retrying | processed | ignored | needs_attention | failed | rejected
    status: Mapped[str] = mapped_column(String(20), default=EventStatus.RECEIVED)
    reason: Mapped[str | None] = mapped_column(Text)
    email: Mapped[str | None] = mapped_column(String(320), index=True)
    transaction: Mapped[str | None] = mapped_column(String(64))  # Hotmart's purchase code
    student_id: Mapped[int | None] = mapped_column(ForeignKey("students.id"), index=True)
    product_key: Mapped[str | None] = mapped_column(String(100))
    plans: Mapped[Any] = mapped_column(JSONType, nullable=True)  # one Plan per membership touched
    rules_version: Mapped[str | None] = mapped_column(String(80))  # the rules that planned it
    failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # worker exceptions (poison)
    correlation_id: Mapped[str] = mapped_column(String(32))
    # Last handed to the workers (stored, released, replayed, retried, requeued by the sweep): the
    # sweep requeues an unfinished event once STUCK_AFTER_SECONDS have passed since. None: held.
    enqueued_at: Mapped[datetime | None]
    processed_at: Mapped[datetime | None]

    action_runs: Mapped[list[ActionRun]] = relationship(order_by="ActionRun.step_index")


class ActionRun(Base):
    """One planned step (the outbox): recorded before it runs, marked after."""

    __tablename__ = "action_runs"
    __table_args__ = (
        UniqueConstraint("event_id", "step_index"),
        Index("ix_action_runs_event_id_id", "event_id", "id"),  # an event's first step: min(id)
        Index("ix_action_runs_action_status", "action", "status"),  # /metrics counts by both
        partial_index("ix_action_runs_retrying", "event_id", "retry_at", where="status = 'retrying'"),  # the sweep
        # A membership's steps not done yet (engine.pipeline.ordering); the errors /metrics counts.
        partial_index(
            "ix_action_runs_open_membership",
            "membership_id",
            "id",
            where=f"{OPEN_STEPS_WHERE} AND membership_id IS NOT NULL",
        ),
        partial_index("ix_action_runs_errors", "error", "status", where="error IS NOT NULL"),
    )

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id"))
    membership_id: Mapped[int | None] = mapped_column(ForeignKey("memberships.id"))
    step_index: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(40))
    params: Mapped[dict[str, Any]]
    # pending | running | retrying | done | skipped | failed
    status: Mapped[str] = mapped_column(String(20), default=RunStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(String(60))
    detail: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None]
    retry_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class Grant(Base):
    """The ledger of what the engine granted, per membership (access is a union)."""

    __tablename__ = "grants"
    __table_args__ = (UniqueConstraint("membership_id", "kind", "resource"),)

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    student_id: Mapped[int] = mapped_column(ForeignKey("students.id"), index=True)
    membership_id: Mapped[int] = mapped_column(ForeignKey("memberships.id"))
    kind: Mapped[str] = mapped_column(String(20))  # discord_role | manychat_tag | class
    resource: Mapped[str] = mapped_column(String(200))
    applied: Mapped[bool] = mapped_column(Boolean, default=True)  # False: wanted, not yet applied
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Alert(Base):
    __tablename__ = "alerts"
    __table_args__ = (
        partial_index("ix_alerts_unnotified", "id", where="notified IS NULL"),  # to post (the sweep)
        partial_index("ix_alerts_unacknowledged", "id", where="acknowledged_at IS NULL"),  # open ones
    )

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    kind: Mapped[str] = mapped_column(String(60))
    message: Mapped[str] = mapped_column(Text)
    event_id: Mapped[int | None] = mapped_column(ForeignKey("events.id"))
    action_run_id: Mapped[int | None] = mapped_column(ForeignKey("action_runs.id"))
    student_id: Mapped[int | None] = mapped_column(ForeignKey("students.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    notified: Mapped[str | None] = mapped_column(String(20))  # discord delivery: done | skipped | failed
    acknowledged_at: Mapped[datetime | None]
    # One open alert per cause: later occurrences count here instead of adding rows.
    group_key: Mapped[str | None] = mapped_column(String(200), index=True)
    count: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    last_seen_at: Mapped[datetime | None]
    notified_at: Mapped[datetime | None]


class History(Base):
    """The audit trail of what happened to a student beyond their events' own rows: replays,
    state renames, imports, admin requests. Insert-only; ``engine student`` reads it."""

    __tablename__ = "history"
    __table_args__ = (Index("ix_history_actor_id", "actor", "id"),)  # the admin page's audit view

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(40))  # replay | state_renamed | imported | ...
    student_id: Mapped[int | None] = mapped_column(ForeignKey("students.id"), index=True)
    membership_id: Mapped[int | None] = mapped_column(ForeignKey("memberships.id"))
    event_id: Mapped[int | None] = mapped_column(ForeignKey("events.id"), index=True)
    actor: Mapped[str | None] = mapped_column(String(100))  # who asked: "admin-api", "cli", "worker"
    rules_version: Mapped[str | None] = mapped_column(String(80))
    detail: Mapped[dict[str, Any] | None]


class ScheduledEvent(Base):
    """A timer: fires ``event_type`` for a membership at ``due_at`` (survives restarts)."""

    __tablename__ = "scheduled_events"
    __table_args__ = (Index("ix_scheduled_status_due", "status", "due_at"),)

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    membership_id: Mapped[int] = mapped_column(ForeignKey("memberships.id"), index=True)
    event_type: Mapped[str] = mapped_column(String(60))
    due_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(20), default=TimerStatus.PENDING)
    created_by_event_id: Mapped[int | None] = mapped_column(ForeignKey("events.id"))
    fired_event_id: Mapped[int | None] = mapped_column(ForeignKey("events.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OnboardingToken(Base):
    __tablename__ = "onboarding_tokens"
    # A membership's unused codes (revoke_token).
    __table_args__ = (
        partial_index(
            "ix_onboarding_tokens_unused_membership",
            "membership_id",
            where="used_at IS NULL AND membership_id IS NOT NULL",
        ),
    )

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    code: Mapped[str] = mapped_column(String(16), unique=True)
    student_id: Mapped[int] = mapped_column(ForeignKey("students.id"), index=True)
    membership_id: Mapped[int | None] = mapped_column(ForeignKey("memberships.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    used_by_discord_id: Mapped[str | None] = mapped_column(String(21))
    revoked_at: Mapped[datetime | None]
    revoked_reason: Mapped[str | None] = mapped_column(String(20))  # replaced | access_ended

    @classmethod
    def unspent(cls, student_id: int) -> tuple:
        """WHERE clauses for a student's codes neither used nor revoked (expiry aside)."""
        return (cls.student_id == student_id, cls.used_at.is_(None), cls.revoked_at.is_(None))


class LinkAttempt(Base):
    """Failed /registrar attempts, for the per-user attempt limit."""

    __tablename__ = "link_attempts"

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    discord_user_id: Mapped[str] = mapped_column(String(21), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    outcome: Mapped[str] = mapped_column(String(30))


class AdminSession(Base):
    """A signed-in operator of the admin page. The cookie holds a random token; only its SHA-256
    is stored, so a copy of the database signs no one in."""

    __tablename__ = "admin_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    operator: Mapped[str] = mapped_column(String(100))
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class LoginAttempt(Base):
    """A sign-in to the admin page or the admin API, kept for the per-address lockout."""

    __tablename__ = "login_attempts"
    __table_args__ = (Index("ix_login_attempts_address_at", "address", "at"),)

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    address: Mapped[str] = mapped_column(String(64))
    operator: Mapped[str | None] = mapped_column(String(100))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    ok: Mapped[bool] = mapped_column(Boolean)


class CourseClass(Base):
    __tablename__ = "classes"

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    key: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200))


class ClassEnrollment(Base):
    """A student in a class, or a removal kept as a tombstone (``removed_at``): one row per student
    and class, changed in place, so the read API can page over a class's changes in
    ``(changed_at, id)`` order (engine.pipeline.classes; migration 0013)."""

    __tablename__ = "class_enrollments"
    __table_args__ = (
        UniqueConstraint("class_id", "student_id"),
        Index("ix_class_enrollments_changes", "class_id", "changed_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    class_id: Mapped[int] = mapped_column(ForeignKey("classes.id"))
    student_id: Mapped[int] = mapped_column(ForeignKey("students.id"), index=True)
    # The membership whose step made the last change (its product and state go with the row).
    membership_id: Mapped[int | None] = mapped_column(ForeignKey("memberships.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)  # when the current enrollment began
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)  # the last enrollment or removal
    removed_at: Mapped[datetime | None]  # set: no longer enrolled (a tombstone)


class Heartbeat(Base):
    """A process saying it is alive: each worker upserts its row every few seconds."""

    __tablename__ = "heartbeats"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)  # worker:<host>:<pid>
    beat_at: Mapped[datetime]
    started_at: Mapped[datetime]
    rules_version: Mapped[str | None] = mapped_column(String(80))  # the rules the worker runs (engine doctor)


class ReconcileRun(Base):
    """One ``engine reconcile`` run (by hand, scheduled or from ``engine plan --apply``): what it
    found, and what it applied or held back."""

    __tablename__ = "reconcile_runs"

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    started_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    finished_at: Mapped[datetime | None]
    trigger: Mapped[str] = mapped_column(String(20))  # cli | schedule | plan | page
    mode: Mapped[str] = mapped_column(String(20))  # report | grants | all
    # running | reported | applied | held | failed
    status: Mapped[str] = mapped_column(String(20), default="running")
    students: Mapped[int] = mapped_column(Integer, default=0)
    counts: Mapped[dict[str, Any] | None]  # per product: missing, extra, not_in_server, subscribers_not_found
    diff: Mapped[dict[str, Any] | None]  # the report (changes capped, see engine/reconcile)
    applied: Mapped[dict[str, Any] | None]  # events queued, grants and revokes applied, or why held
    error: Mapped[str | None] = mapped_column(Text)


class SyncRun(Base):
    """One ``engine sync hotmart`` run (by hand or scheduled): the platform's API read since a
    point, the changes no webhook brought, and what was stored for the pipeline or held back."""

    __tablename__ = "sync_runs"

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    source: Mapped[str] = mapped_column(String(20))  # the platform read: hotmart
    started_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    finished_at: Mapped[datetime | None]
    trigger: Mapped[str] = mapped_column(String(20))  # cli | schedule | page
    mode: Mapped[str] = mapped_column(String(20))  # report | grants | all
    # running | reported | applied | held | failed
    status: Mapped[str] = mapped_column(String(20), default="running")
    since: Mapped[datetime]  # the sales read were made from here on
    counts: Mapped[dict[str, Any] | None]  # per product: changes found, by event type
    report: Mapped[dict[str, Any] | None]  # what was read, the changes found (capped), notes
    applied: Mapped[dict[str, Any] | None]  # events stored and duplicates, or why held
    error: Mapped[str | None] = mapped_column(Text)
