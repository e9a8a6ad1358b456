"""``engine status``'s database part: the oldest event still on its way through the pipeline,
how many events wait, need attention or failed, and how many alerts are open."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine.db.models import Alert, Event
from engine.statuses import EventStatus

UNPROCESSED = (EventStatus.RECEIVED, EventStatus.HELD, EventStatus.PROCESSING, EventStatus.RETRYING)
COUNTED = (*UNPROCESSED, EventStatus.NEEDS_ATTENTION, EventStatus.FAILED)


@dataclass(frozen=True)
class OldestEvent:
    id: int
    type: str | None
    status: str
    received_at: datetime


@dataclass(frozen=True)
class Backlog:
    oldest: OldestEvent | None  # the oldest unprocessed event, None when every event is done
    counts: dict[str, int]  # status -> events, for every status of COUNTED (in that order)
    open_alerts: int


def event_backlog(session: Session) -> Backlog:
    oldest = session.execute(
        select(Event.id, Event.type, Event.status, Event.received_at)
        .where(Event.status.in_(UNPROCESSED))
        .order_by(Event.received_at, Event.id)
        .limit(1)
    ).first()
    counts = dict(
        session.execute(
            select(Event.status, func.count()).where(Event.status.in_(COUNTED)).group_by(Event.status)
        ).all()
    )
    open_alerts = session.scalar(select(func.count()).select_from(Alert).where(Alert.acknowledged_at.is_(None)))
    return Backlog(
        oldest=OldestEvent(*oldest) if oldest is not None else None,
        counts={status: counts.get(status, 0) for status in COUNTED},
        open_alerts=open_alerts or 0,
    )
