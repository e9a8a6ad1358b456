"""``engine retry`` and ``POST /admin/events/{id}/retry``: resume a failed event from its failed step.

A failed event keeps its planned steps (the outbox): a retry runs the failed one and those after
it rather than deciding the event anew. A needs_attention event with nothing left to run was
never planned: it is replayed against the current rules instead. :func:`retry_preview` says
which of the two a retry would do, and which steps, changing nothing (the admin page's confirmation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.db.models import ActionRun, Event, Membership
from engine.pipeline.attention import NEEDS_ATTENTION
from engine.pipeline.history import record_history
from engine.pipeline.locks import lock_event_buyer
from engine.pipeline.replay import reset_for_replay
from engine.pipeline.runtime import Runtime
from engine.sources import SOURCES, is_platform
from engine.statuses import OPEN_RUN_STATUSES, EventStatus, RunStatus


class RetryRefused(Exception):
    pass


class Overtaken(RetryRefused):
    """A later event changed the membership since: retrying takes ``force``."""


@dataclass(frozen=True)
class StepToRun:
    """One planned step a retry runs again."""

    number: int  # 1-based, as `engine student` numbers steps (#event.number)
    action: str
    status: str
    error: str | None


@dataclass(frozen=True)
class RetryPreview:
    """What :func:`retry_event` would do with the same arguments: nothing is changed."""

    event_id: int
    status: str
    replay: bool = False  # never planned: decided anew against the current rules
    steps: list[StepToRun] = field(default_factory=list)
    refused: str | None = None
    overtaken: bool = False  # refused because a later event changed the membership: force would run it


def retry_event(
    rt: Runtime,
    event_id: int,
    *,
    force: bool = False,
    skipped: bool = False,
    actor: str = "admin",
    note: str | None = None,
    audit: bool = False,
) -> str:
    """Resume a failed event from its failed step (or process a stuck one again).

    A ``needs_attention`` event resumes its planned steps if it has any (a poison event that
    failed while they ran); otherwise it is replayed against the current rules (recorded in
    the history with ``actor`` and ``note``).

    ``skipped`` also replays the steps recorded as skipped because a connector's flag was
    off (turning a flag on never replays them by itself). A failed event may have been
    overtaken: if a later event changed the same membership (a refund after a failed
    grant), resuming could undo it, so that takes ``force``.

    ``audit``: a resumed retry is written to the history too (with ``actor`` and ``note``; the
    admin page asks for it, the API and the CLI leave it to the event's own rows).
    """
    with rt.sessions.begin() as session:
        lock_event_buyer(session, event_id)
        event = session.get(Event, event_id)
        if event is None:
            raise LookupError(f"event {event_id} not found")
        runs = _runs(session, event_id)
        replay, chosen = _choose(session, event, runs, force=force, skipped=skipped)
        if replay:
            reset_for_replay(rt, session, event, actor=actor, note=note)
        else:
            if audit:
                record_history(
                    session,
                    kind="retry",
                    at=rt.now(),
                    student_id=event.student_id,
                    event_id=event.id,
                    actor=actor,
                    detail={
                        "previous_status": event.status,
                        "steps": [f"#{run.step_index + 1} {run.action}" for run in chosen],
                        **({"note": note} if note else {}),
                    },
                )
            _resume(event, chosen)
        event.enqueued_at = rt.now()
    rt.queue.enqueue(event_id)
    return "queued"


def retry_preview(rt: Runtime, event_id: int, *, force: bool = False, skipped: bool = False) -> RetryPreview:
    """Which steps a retry would run again, or that it would replay the event, or why it is refused."""
    with rt.sessions() as session:
        event = session.get(Event, event_id)
        if event is None:
            raise LookupError(f"event {event_id} not found")
        runs = _runs(session, event_id)
        try:
            replay, chosen = _choose(session, event, runs, force=force, skipped=skipped)
        except RetryRefused as exc:
            return RetryPreview(event.id, event.status, refused=str(exc), overtaken=isinstance(exc, Overtaken))
        steps = [StepToRun(run.step_index + 1, run.action, run.status, run.error) for run in chosen]
        return RetryPreview(event.id, event.status, replay=replay, steps=[] if replay else steps)


def _runs(session: Session, event_id: int) -> list[ActionRun]:
    return list(
        session.scalars(
            select(ActionRun).where(ActionRun.event_id == event_id).order_by(ActionRun.step_index, ActionRun.id)
        )
    )


def _choose(
    session: Session, event: Event, runs: Sequence[ActionRun], *, force: bool, skipped: bool
) -> tuple[bool, list[ActionRun]]:
    """(replay the event?, the steps to run again); raises :class:`RetryRefused`."""
    if event.status == EventStatus.HELD:
        setting = SOURCES[event.source].enabled_setting.upper() if is_platform(event.source) else "its source"
        raise RetryRefused(f"event is held: turn {setting} on to process held events")
    if event.status == NEEDS_ATTENTION:
        unfinished = [run for run in runs if run.status in (*OPEN_RUN_STATUSES, RunStatus.FAILED)]
        return not unfinished, unfinished  # never planned (or nothing left to run): decide it again
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
            raise Overtaken(
                "a later event changed this membership since; retrying could undo it "
                "(use force to run the remaining steps anyway)"
            )
    return False, wanted


def _resume(event: Event, chosen: Sequence[ActionRun]) -> None:
    if event.status == NEEDS_ATTENTION:  # planned: resume its steps (the open ones run as they are)
        event.status, event.reason, event.failures = EventStatus.PROCESSING, None, 0
        for run in chosen:
            if run.status == RunStatus.FAILED:
                run.status, run.attempts, run.retry_at = RunStatus.PENDING, 0, None
        return
    for run in chosen:
        run.status, run.attempts, run.retry_at = RunStatus.PENDING, 0, None
    if event.status in (EventStatus.FAILED, EventStatus.RETRYING, EventStatus.PROCESSED):
        event.status, event.reason, event.processed_at = EventStatus.PROCESSING, None, None
