"""Reading what is stuck: events that should have finished and students' locks held by idle
connections. What the engine does about it is ``engine.pipeline.watchdog``'s."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from engine import alert_texts
from engine.db.locks import Namespace
from engine.db.models import Event
from engine.settings import Settings
from engine.statuses import EventStatus

STUCK_STATUSES = (EventStatus.RECEIVED, EventStatus.PROCESSING)

# The buyer locks held by connections that have run nothing for a while (not this one).
_IDLE_HOLDERS = text(
    """
    SELECT a.pid, EXTRACT(EPOCH FROM (now() - a.state_change)) AS idle_seconds, a.state
    FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.granted AND l.classid = :ns AND l.objsubid = 2
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND a.state IN ('idle', 'idle in transaction', 'idle in transaction (aborted)')
      AND a.state_change < now() - make_interval(secs => :idle)
      AND a.pid <> pg_backend_pid()
    ORDER BY a.state_change
    """
)


@dataclass
class IdleLock:
    pid: int
    idle_seconds: float
    state: str


@dataclass
class Stuck:
    """The stuck events and idle lock holders found now."""

    events: int = 0
    oldest_event_id: int | None = None
    oldest_event_age: float = 0.0
    idle_locks: list[IdleLock] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.events or self.idle_locks)

    def describe(self, settings: Settings) -> str:
        return alert_texts.stuck(
            self.events,
            self.oldest_event_id,
            self.oldest_event_age,
            settings.stuck_after_seconds,
            [lock.idle_seconds for lock in self.idle_locks],
            settings.stuck_lock_seconds,
        )


def find_stuck(session: Session, settings: Settings, now: datetime) -> Stuck:
    stuck = Stuck()
    cutoff = now - timedelta(seconds=settings.stuck_after_seconds)
    count, oldest = session.execute(
        select(func.count(), func.min(Event.received_at)).where(
            Event.status.in_(STUCK_STATUSES), Event.received_at < cutoff
        )
    ).one()
    if count:
        stuck.events = count
        stuck.oldest_event_id = session.scalar(
            select(Event.id)
            .where(Event.status.in_(STUCK_STATUSES), Event.received_at < cutoff)
            .order_by(Event.received_at, Event.id)
            .limit(1)
        )
        stuck.oldest_event_age = (now - _aware(oldest)).total_seconds()
    if session.get_bind().dialect.name == "postgresql":
        rows = session.execute(_IDLE_HOLDERS, {"ns": int(Namespace.BUYER), "idle": settings.stuck_after_seconds})
        stuck.idle_locks = [IdleLock(pid, float(idle), state) for pid, idle, state in rows]
    return stuck


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
