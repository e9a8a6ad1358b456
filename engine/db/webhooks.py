"""When each platform's last webhook arrived (the silence alert and ``/metrics`` ask)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine.db.models import Event


def last_webhook_at(session: Session, source: str) -> datetime | None:
    """A backward walk on ``ix_events_source_received_at`` (migration 0011) to the newest webhook,
    however many events there are, and whether or not the platform ever sent one. The events
    ``engine sync`` stored from the platform's API are not webhooks (``origin`` set): skipped, so
    that a sync never hides a silence."""
    return session.scalar(select(func.max(Event.received_at)).where(Event.source == source, Event.origin.is_(None)))
