"""Process one event: a worker task that takes it forward through its stages, then runs its steps.

Settling (:mod:`~engine.pipeline.settling`: a fresh webhook waits for its buyer's webhooks in
flight), admission (:mod:`~engine.pipeline.admission`: whose event it is), planning
(:mod:`~engine.pipeline.planning`: each membership's transition and steps, written in ONE
transaction under the buyer's lock), then execution (:mod:`~engine.pipeline.execution`: the steps
in order). Each stored payload is parsed once per task (:class:`~engine.pipeline.facts.TaskInputs`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.db.conflicts import retry_conflicts
from engine.db.models import Event
from engine.logs import log_context
from engine.pipeline import attention
from engine.pipeline.admission import admit, admit_earlier
from engine.pipeline.alerts import notify_alerts, take_raised
from engine.pipeline.execution import OPEN_STATUSES, Opened, drain_student, is_retryable
from engine.pipeline.facts import TaskInputs
from engine.pipeline.locks import StudentHold, event_buyer
from engine.pipeline.planning import plan_event, plan_waiting
from engine.pipeline.rules_fit import fit_database
from engine.pipeline.runtime import Runtime
from engine.pipeline.settling import settle_wait
from engine.statuses import EventStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Planned(Opened):
    """What a task's first transaction did with its event: the event's status then, and the
    seconds it still settles (it is scheduled again for then)."""

    status: str = "missing"
    wait: float = 0.0


def process_event(rt: Runtime, event_id: int) -> str:
    """Plan and run one event; returns the event's status afterwards.

    An exception is counted on the event (it stays queued for the sweep); the
    ``WORKER_MAX_FAILURES``-th makes it ``needs_attention`` (a poison event, never re-queued).
    A lost or missing database connection is no fault of the event: it propagates (the
    worker task retries itself within seconds).
    Every log line of the event says which it is (``event_id``).
    """
    with log_context(event_id=event_id):
        return _process_event(rt, event_id)


def _process_event(rt: Runtime, event_id: int) -> str:
    rt.rules.reload_if_changed()
    fit_database(rt)  # a new rules version: declared renames first, then plan on them
    attention.report_rules_failure(rt)
    try:
        status = retry_conflicts(lambda: _process(rt, event_id), f"event {event_id}")
    except Exception as exc:
        if attention.is_transient(exc) or is_retryable(exc):
            raise
        log.exception("processing event %s failed", event_id)
        status = attention.record_failure(rt, event_id, exc)
    if take_raised():
        notify_alerts(rt)  # post alerts raised by this event now, not at the next sweep
    return status


def _process(rt: Runtime, event_id: int) -> str:
    """One connection and, for a typical event, three transactions: read + lock + plan +
    local steps; each remote step's result; the unlock."""
    with StudentHold(rt.sessions) as hold:
        drained = drain_student(rt, None, hold=hold, first=lambda session: _plan(rt, session, hold, event_id))
    planned = drained.opened
    if planned.wait:
        rt.queue.schedule_event(event_id, planned.wait)
    if drained.handed_to and planned.student_id is not None:
        rt.queue.hand_off(planned.student_id, drained.handed_to)
    return drained.statuses.get(event_id, planned.status)


def _plan(rt: Runtime, session: Session, hold: StudentHold, event_id: int) -> Planned:
    """The task's first transaction: settle, admit and plan the event (with the buyer's other
    settled events), or find it already planned; what to drain next.

    The buyer's lock is taken before anything of theirs is written (this event included): the
    lock order of ``engine.db.locks``. A fresh webhook still settling takes no lock at all.
    """
    # Whose event it is, read before the lock; the event itself is read under it.
    found = session.execute(
        select(Event.email, Event.student_id, Event.status, Event.source, Event.received_at).where(Event.id == event_id)
    ).first()
    if found is None:
        return Planned(None)
    if found.status == EventStatus.RECEIVED and (wait := settle_wait(rt, session, found)) > 0:
        return Planned(None, found.status, wait)  # planned with the student's other fresh events
    if found.status in (EventStatus.RECEIVED, *OPEN_STATUSES):
        buyer = event_buyer(session, found.email, found.student_id)
        if buyer:  # none: a body with no e-mail, which concerns nobody (ignored below)
            hold.lock_buyer(session, buyer)
    event = session.get(Event, event_id)
    if event.status == EventStatus.HELD:
        return Planned(None, event.status)
    if event.status == EventStatus.RECEIVED and not rt.rules.available:
        attention.rules_unavailable(rt, session, event, rt.rules.load_error)
        return Planned(None, event.status)
    if event.status == EventStatus.RECEIVED:
        inputs = TaskInputs(rt.rules.rules)
        admit_earlier(rt, session, event, inputs)
        if not admit(rt, session, event, inputs.of(event)).goes_on:
            return Planned(None, event.status)
        hold.lock(session, event.student_id)  # the same buyer: already held
        plan_waiting(rt, session, event.student_id, event_id, inputs)
    if event.status not in OPEN_STATUSES or event.student_id is None:
        return Planned(None, event.status)
    return Planned(event.student_id, event.status)


def preview_event(rt: Runtime, event_id: int) -> Event:
    """What processing the stored event would decide now (status, reason, plans): nothing is kept.

    The real planning runs in a transaction that is rolled back, so the preview is exactly
    what a replay would decide (the onboarding code aside: a new one is drawn each time).
    """
    session = rt.sessions()
    try:
        event = session.get(Event, event_id)
        if event is None:
            raise LookupError(f"event {event_id} not found")
        session.info[attention.PREVIEW] = True  # no alert is raised, not even one rolled back
        event.status, event.reason, event.plans = EventStatus.RECEIVED, None, None
        if not rt.rules.available:
            attention.rules_unavailable(rt, session, event, rt.rules.load_error)
        else:
            inputs = TaskInputs(rt.rules.rules)
            admission = admit(rt, session, event, inputs.of(event))
            if admission.goes_on:
                plan_event(rt, session, event, admission.student_id, inputs)
        session.flush()
        preview = Event(
            id=event.id,
            type=event.type,
            status=event.status,
            reason=event.reason,
            plans=event.plans,
            rules_version=rt.rules.version,
            email=event.email,
        )
        return preview
    finally:
        session.rollback()
        session.close()
