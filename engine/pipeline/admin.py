"""Admin operations shared by the API and the CLI."""

from __future__ import annotations

from sqlalchemy import select, update

from engine.db.models import ActionRun, Event, Membership
from engine.pipeline.runtime import Runtime


class RetryRefused(Exception):
    pass


def retry_event(rt: Runtime, event_id: int, *, force: bool = False) -> str:
    """Resume a failed event from its failed step (or process a stuck one again).

    A failed step's event may have been overtaken: if a later event changed the same
    membership (a refund after a failed grant), resuming could undo it, so it takes force.
    """
    with rt.sessions.begin() as session:
        event = session.get(Event, event_id)
        if event is None:
            raise LookupError(f"event {event_id} not found")
        if event.status == "held":
            raise RetryRefused("event is held: turn HOTMART_ENABLED on to process held events")
        if event.status in ("processed", "ignored", "rejected"):
            raise RetryRefused(f"event is {event.status}: nothing to retry")
        if event.status == "failed" and not force:
            overtaken = session.scalars(
                select(Membership.id)
                .join(ActionRun, ActionRun.membership_id == Membership.id)
                .where(
                    ActionRun.event_id == event_id,
                    Membership.last_event_id.is_not(None),
                    Membership.last_event_id > event_id,
                )
            ).first()
            if overtaken is not None:
                raise RetryRefused(
                    "a later event changed this membership since; retrying could undo it "
                    "(use force to run the remaining steps anyway)"
                )
        session.execute(
            update(ActionRun)
            .where(ActionRun.event_id == event_id, ActionRun.status.in_(("failed", "retrying")))
            .values(status="pending", attempts=0, retry_at=None)
        )
        if event.status in ("failed", "retrying"):
            event.status = "processing"
        event.reason = None if event.status == "processing" else event.reason
    rt.enqueue(event_id)
    return "queued"
