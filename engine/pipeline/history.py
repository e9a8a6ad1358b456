"""The student's audit trail beyond their events: replays, renames, imports, admin requests."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from engine.db.models import History


def record_history(
    session: Session,
    *,
    kind: str,
    at: datetime,
    student_id: int | None = None,
    membership_id: int | None = None,
    event_id: int | None = None,
    actor: str | None = None,
    rules_version: str | None = None,
    detail: dict[str, Any] | None = None,
) -> History:
    """Add one entry in the caller's transaction (it commits or rolls back with the change it records)."""
    entry = History(
        kind=kind,
        created_at=at,
        student_id=student_id,
        membership_id=membership_id,
        event_id=event_id,
        actor=actor,
        rules_version=rules_version,
        detail=detail,
    )
    session.add(entry)
    return entry
