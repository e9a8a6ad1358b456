"""Replay stored events against the current rules (after the cause of ``needs_attention`` is fixed).

A replay forgets the event's earlier verdict (its steps stay, for the audit) and plans it
again as if it had just arrived; each one is recorded in the history with who asked and
the rules version that decides it. Hotmart's redelivery of such an event stays a duplicate:
the replay is the way back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.db.models import Event, Student
from engine.pipeline.attention import NEEDS_ATTENTION
from engine.pipeline.history import record_history
from engine.pipeline.locks import lock_event_buyer
from engine.pipeline.runtime import Runtime
from engine.sources import is_platform, source_enabled
from engine.statuses import IN_FLIGHT_EVENT_STATUSES, REPLAYABLE_EVENT_STATUSES, EventStatus

# Events still on their way through the pipeline cannot be replayed (they will be decided).
IN_FLIGHT = IN_FLIGHT_EVENT_STATUSES
REPLAYABLE = REPLAYABLE_EVENT_STATUSES


class ReplayRefused(Exception):
    pass


@dataclass
class ReplayResult:
    event_id: int
    type: str | None
    before: str
    after: str
    reason: str | None
    rules_version: str | None
    refused: bool = False  # not replayed (``reason`` says why); ``after`` is ``before``

    def to_dict(self) -> dict:
        return {
            "event_id": self.event_id,
            "type": self.type,
            "before": self.before,
            "after": self.after,
            "reason": self.reason,
            "rules_version": self.rules_version,
            "refused": self.refused,
        }


def select_events(
    session: Session,
    *,
    status: str | None = NEEDS_ATTENTION,
    event_type: str | None = None,
    since: datetime | None = None,
    reason: str | None = None,
    up_to_id: int | None = None,
    ids: Iterable[int] = (),
    limit: int = 10_000,
) -> list[int]:
    """Ids to replay, oldest first: those matching the filters, plus the ones named. ``reason``: only
    events of this exact cause; ``up_to_id``: none stored after the one an operator previewed last."""
    named = sorted(set(ids))
    chosen: set[int] = set(named)
    if status or not named:
        conditions = [Event.status == (status or NEEDS_ATTENTION)]
        if event_type:
            conditions.append(Event.type == event_type.strip().upper())
        if since is not None:
            conditions.append(Event.received_at >= (since if since.tzinfo else since.replace(tzinfo=UTC)))
        if reason:
            conditions.append(Event.reason == reason)
        if up_to_id is not None:
            conditions.append(Event.id <= up_to_id)
        chosen |= set(session.scalars(select(Event.id).where(*conditions).order_by(Event.id).limit(limit)))
    return sorted(chosen)


def _refusal(event: Event) -> str | None:
    """Why this event cannot be replayed, or None."""
    if event.status in IN_FLIGHT:
        return f"event {event.id} is {event.status}: it is still being processed"
    if event.source == "reconcile":  # planned by a reconcile run from the world's state, not by the rules
        return (
            f"event {event.id} is a reconcile run's steps, not a rules decision: "
            f"`engine retry {event.id}` resumes its failed steps, `engine reconcile` compares again"
        )
    return None


def reset_for_replay(rt: Runtime, session: Session, event: Event, *, actor: str, note: str | None = None) -> None:
    """Make the event ``received`` (or ``held``) again and record the replay (in the caller's
    transaction, which queues it once committed); ``note``: why, in the operator's words."""
    refusal = _refusal(event)
    if refusal is not None:
        raise ReplayRefused(refusal)
    student_id = event.student_id
    if student_id is None and event.email:
        student_id = session.scalar(select(Student.id).where(Student.email == event.email.strip().lower()))
    record_history(
        session,
        kind="replay",
        at=rt.now(),
        student_id=student_id,
        event_id=event.id,
        actor=actor,
        rules_version=rt.rules.version,
        detail={
            "previous_status": event.status,
            "previous_reason": event.reason,
            "previous_rules_version": event.rules_version,
            **({"note": note} if note else {}),
        },
    )
    # With its source off (HOTMART_ENABLED ...) a replayed webhook is held like a new one (released
    # in creation order).
    held = is_platform(event.source) and not source_enabled(rt.settings, event.source)
    event.status, event.reason, event.plans = (EventStatus.HELD if held else EventStatus.RECEIVED), None, None
    event.processed_at, event.failures, event.enqueued_at = None, 0, rt.now()


def replay(
    rt: Runtime,
    event_ids: Iterable[int],
    *,
    actor: str,
    note: str | None = None,
    process: Callable[[Runtime, int], str] | None = None,
    on_each: Callable[[ReplayResult], None] | None = None,
) -> list[ReplayResult]:
    """Replay each event in turn; ``process`` runs it now (else it is queued for the workers);
    ``note`` goes with each one's history entry."""
    results: list[ReplayResult] = []
    for event_id in event_ids:
        with rt.sessions.begin() as session:
            # Locked: the sweep and the rules watcher may resume the same event at once, and a
            # worker may hold the buyer (their lock first, then the row: engine.db.locks).
            lock_event_buyer(session, event_id)
            event = session.get(Event, event_id, with_for_update=True)
            if event is None:
                raise LookupError(f"event {event_id} not found")
            before = event.status
            try:
                reset_for_replay(rt, session, event, actor=actor, note=note)
            except ReplayRefused as exc:
                result = ReplayResult(event_id, event.type, before, before, str(exc), event.rules_version, refused=True)
                results.append(result)
                if on_each:
                    on_each(result)
                continue
        if process is None:
            rt.queue.enqueue(event_id)
        else:
            process(rt, event_id)
        with rt.sessions() as session:
            event = session.get(Event, event_id)
            result = ReplayResult(event_id, event.type, before, event.status, event.reason, event.rules_version)
        results.append(result)
        if on_each:
            on_each(result)
    return results


def preview(rt: Runtime, event_ids: Iterable[int]) -> list[ReplayResult]:
    """What a replay would decide for each event, with nothing kept (``--dry-run``)."""
    from engine.pipeline.processing import preview_event

    results = []
    for event_id in event_ids:
        with rt.sessions() as session:
            event = session.get(Event, event_id)
            if event is None:
                raise LookupError(f"event {event_id} not found")
            before, refusal = event.status, _refusal(event)
        if refusal is not None:
            results.append(ReplayResult(event_id, event.type, before, before, refusal, None, refused=True))
            continue
        decided = preview_event(rt, event_id)
        after, reason = decided.status, decided.reason
        if after in (EventStatus.PROCESSING, EventStatus.PROCESSED):
            after, reason = (
                EventStatus.PROCESSED,
                "; ".join(_describe(plan) for plan in decided.plans or [] if plan.get("transition")),
            )
        results.append(ReplayResult(event_id, decided.type, before, after, reason, decided.rules_version))
    return results


def _describe(plan: dict) -> str:
    steps = ", ".join(step["action"] for step in plan.get("steps") or [])
    return (
        f"{plan.get('product')}: {plan.get('from_state')} -> {plan.get('to_state')} ({plan.get('transition')}: {steps})"
    )


def summarize(results: list[ReplayResult]) -> dict[str, int]:
    """Outcome -> how many (``processed``, ``ignored``, ``needs_attention``..., ``refused``)."""
    counts: dict[str, int] = {}
    for result in results:
        outcome = "refused" if result.refused else result.after
        counts[outcome] = counts.get(outcome, 0) + 1
    return dict(sorted(counts.items()))
