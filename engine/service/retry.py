"""``engine retry`` and ``POST /admin/events/{id}/retry``: resume a failed event from its failed step.

A failed event keeps its planned steps (the outbox): a retry runs the failed one and those after
it rather than deciding the event anew. A needs_attention event with nothing left to run was
never planned: it is replayed against the current rules instead.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.db.models import ActionRun, Event, Membership
from engine.pipeline.attention import NEEDS_ATTENTION
from engine.pipeline.locks import lock_event_buyer
from engine.pipeline.replay import reset_for_replay
from engine.pipeline.runtime import Runtime
from engine.sources import SOURCES, is_platform
from engine.statuses import OPEN_RUN_STATUSES, EventStatus, RunStatus


class RetryRefused(Exception):
    pass


def retry_event(rt: Runtime, event_id: int, *, force: bool = False, skipped: bool = False, actor: str = "admin") -> str:
    """Resume a failed event from its failed step (or process a stuck one again).

    A ``needs_attention`` event resumes its planned steps if it has any (a poison event that
    failed while they ran); otherwise it is replayed against the current rules (recorded in
    the history with ``actor``).

    ``skipped`` also replays the steps recorded as skipped because a connector's flag was
    off (turning a flag on never replays them by itself). A failed event may have been
    overtaken: if a later event changed the same membership (a refund after a failed
    grant), resuming could undo it, so that takes ``force``.
    """
    with rt.sessions.begin() as session:
        lock_event_buyer(session, event_id)
        event = session.get(Event, event_id)
        if event is None:
            raise LookupError(f"event {event_id} not found")
        if event.status == EventStatus.HELD:
            setting = SOURCES[event.source].enabled_setting.upper() if is_platform(event.source) else "its source"
            raise RetryRefused(f"event is held: turn {setting} on to process held events")
        runs = session.scalars(select(ActionRun).where(ActionRun.event_id == event_id)).all()
        if event.status == NEEDS_ATTENTION:
            _retry_needing_attention(rt, session, event, runs, actor)
        else:
            _resume(session, event, runs, force=force, skipped=skipped)
        event.enqueued_at = rt.now()
    rt.queue.enqueue(event_id)
    return "queued"


def _resume(session: Session, event: Event, runs: Sequence[ActionRun], *, force: bool, skipped: bool) -> None:
    wanted = [
        run
        for run in runs
        if run.status in (RunStatus.FAILED, RunStatus.RETRYING)
        or (skipped and run.status == RunStatus.SKIPPED and run.error == "flag.disabled")
    ]
    if event.status in (EventStatus.IGNORED, EventStatus.REJECTED) or (
        event.status == EventStatus.PROCESSED and not wanted
    ):
        raise RetryRefused(f"event is {event.status}: nothing to retry")
    if not force and any(run.membership_id for run in wanted):
        overtaken = session.scalars(
            select(Membership.id).where(
                Membership.id.in_({run.membership_id for run in wanted}),
                Membership.last_event_id.is_not(None),
                Membership.last_event_id > event.id,
            )
        ).first()
        if overtaken is not None:
            raise RetryRefused(
                "a later event changed this membership since; retrying could undo it "
                "(use force to run the remaining steps anyway)"
            )
    for run in wanted:
        run.status, run.attempts, run.retry_at = RunStatus.PENDING, 0, None
    if event.status in (EventStatus.FAILED, EventStatus.RETRYING, EventStatus.PROCESSED):
        event.status, event.reason, event.processed_at = EventStatus.PROCESSING, None, None


def _retry_needing_attention(
    rt: Runtime, session: Session, event: Event, runs: Sequence[ActionRun], actor: str
) -> None:
    unfinished = [run for run in runs if run.status in (*OPEN_RUN_STATUSES, RunStatus.FAILED)]
    if not unfinished:  # never planned (or nothing left to run): decide it again
        reset_for_replay(rt, session, event, actor=actor)
        return
    event.status, event.reason, event.failures = EventStatus.PROCESSING, None, 0  # planned: resume its steps
    for run in unfinished:
        if run.status == RunStatus.FAILED:
            run.status, run.attempts, run.retry_at = RunStatus.PENDING, 0, None
