"""Settling: a fresh webhook waits for its buyer's webhooks crossing in flight, then the buyer's
settled events are planned together, in creation order (docs/architecture/index.md, "Per student, in order"), and a
transition that a later event of the batch supersedes sends no message."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam, func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import flag_modified

from engine.db.models import ActionRun, Event, Student, utcnow
from engine.pipeline.ordering import order_key
from engine.pipeline.runtime import Runtime
from engine.rules.actions import ONE_SHOT
from engine.sources import PLATFORMS, is_platform
from engine.statuses import EventStatus, RunStatus

# A fresh webhook never waits longer than this many settle windows after its own arrival.
SETTLE_CAP = 3
# Not planned yet; a constant in the SQL, so that a generic plan still uses the partial index.
_RECEIVED = Event.status.in_(bindparam("received", (EventStatus.RECEIVED,), expanding=True, literal_execute=True))


def settle_wait(rt: Runtime, session: Session, event: Event) -> float:
    """Seconds a fresh webhook still waits before anything is decided: until the newest webhook
    for the same buyer is ORDER_SETTLE_SECONDS old (events crossing in flight then go in
    creation order), at most SETTLE_CAP windows after its own arrival. Wall-clock times."""
    window = rt.settings.order_settle_seconds
    if window <= 0 or not is_platform(event.source) or not event.email:
        return 0.0
    newest = session.scalar(
        select(func.max(Event.received_at)).where(
            Event.email == event.email, Event.status == EventStatus.RECEIVED, Event.source.in_(PLATFORMS)
        )
    )
    window_td = timedelta(seconds=window)
    newest = max(newest or event.received_at, event.received_at)
    settled = min(newest + window_td, event.received_at + SETTLE_CAP * window_td)
    return max((settled - utcnow()).total_seconds(), 0.0)


def settled_events(rt: Runtime, session: Session, student: Student, event_id: int) -> list[Event]:
    """The student's events waiting to be planned, ``event_id`` and the settled ones, in creation order."""
    cutoff = utcnow() - timedelta(seconds=rt.settings.order_settle_seconds)
    settled = or_(Event.received_at <= cutoff, Event.id == event_id)
    # The student's own, and a lead's earlier ones (the e-mail only): two queries, each on its
    # partial index of received events (one with an OR between them would read every one).
    waiting = [
        *session.scalars(select(Event).where(_RECEIVED, Event.student_id == student.id, settled)),
        *session.scalars(
            select(Event).where(_RECEIVED, Event.student_id.is_(None), Event.email == student.email, settled)
        ),
    ]
    return sorted(waiting, key=order_key)


@dataclass
class BatchEntry:
    event: Event
    membership_id: int
    entry: dict[str, Any]  # the event's stored plan for this membership
    runs: list[ActionRun]


def skip_superseded(entries: list[BatchEntry]) -> None:
    """Events planned together in creation order: a transition a later one supersedes (the
    membership moved on from its state within the batch) sends no message and no code."""
    by_membership: dict[int, list[BatchEntry]] = defaultdict(list)
    for item in entries:
        by_membership[item.membership_id].append(item)
    for items in by_membership.values():
        moves = [i for i, item in enumerate(items) if item.entry.get("from_state") != item.entry.get("to_state")]
        if not moves:
            continue
        last = items[moves[-1]]
        for item in items[: moves[-1]]:
            skipped = [run for run in item.runs if run.action in ONE_SHOT and run.status == RunStatus.PENDING]
            for run in skipped:
                run.status, run.error = RunStatus.SKIPPED, "superseded"
                run.detail = f"superseded by event {last.event.id} (created later, applied in the same batch)"
            if skipped:
                item.entry["superseded_by"] = last.event.id
                flag_modified(item.event, "plans")
