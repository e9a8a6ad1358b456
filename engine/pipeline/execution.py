"""Run the planned steps (the outbox), in order, one student at a time.

Transactions: one transaction records the result of the remote step just called, runs
the local steps after it and picks the next remote step; the call itself runs between
transactions. So an event costs its plan plus one transaction per remote step.

"In flight" means the request may have reached the other side. An idempotent step (a
role, a tag, a field) is simply run again after a worker stopped during it. A step that
must not be repeated (a ManyChat flow) becomes ``running`` only when its connector is
about to write the request (``StepContext.before_send``), in its own short transaction:
a worker stopped before that point (subscriber lookup, waiting for a rate-limit slot)
leaves it ``pending`` and the restarted worker sends it once; one stopped after it left a
flow that may have been delivered, which is never resent automatically.

Failure policy (the owner's rule): one retry after a delay, then the step is ``failed``,
the event's later steps wait, and an admin is alerted.

Lanes: a connector may run in its own lane (a separate queue with its own threads, e.g.
ManyChat, whose 10/s per endpoint is slower than events arrive during a launch). A
thread outside that lane hands the student over instead of waiting for the budget, so
other students' steps keep running; the lane's threads wait in the shared limiter.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import and_, bindparam, func, select
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, aliased, defer

from connectors.base import Connector, Step, StepContext, StepResult, StepStatus, StudentRef
from engine import alert_texts
from engine.db.conflicts import CONFLICT_RETRIES, conflict_pause, is_conflict, retry_conflicts
from engine.db.models import ActionRun, Event, Membership, Student
from engine.logs import log_context
from engine.pipeline import classes, ledger
from engine.pipeline.alerts import raise_alert
from engine.pipeline.local_actions import LOCAL_ACTIONS
from engine.pipeline.runtime import Runtime
from engine.rules.actions import IDEMPOTENT as IDEMPOTENT_ACTIONS  # declared per action
from engine.statuses import OPEN_EVENT_STATUSES, OPEN_RUN_STATUSES, EventStatus, RunStatus

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 2  # the first run and one automatic retry


class Outcome(StrEnum):
    """What recording a step's result decided for the event."""

    NEXT = "next"  # the step is final; the event goes on with its next step
    RETRYING = "retrying"  # the step waits for its automatic retry: the student's later events wait too
    FAILED = "failed"  # the step failed for good: the event stops, an admin is alerted


OPEN_STATUSES = OPEN_EVENT_STATUSES
# Written into the SQL as constants, not bound: a generic plan of the prepared statement then
# still proves the partial indexes over the open statuses usable (migration 0010).
_OPEN_STEPS = bindparam("open_steps", tuple(map(str, OPEN_RUN_STATUSES)), expanding=True, literal_execute=True)
_OPEN_EVENTS = bindparam("open_events", tuple(map(str, OPEN_STATUSES)), expanding=True, literal_execute=True)
_EARLIER = aliased(ActionRun)  # the subquery's own steps, not the outer query's
_FIRST_STEP = select(func.min(_EARLIER.id)).where(_EARLIER.event_id == Event.id).correlate(Event).scalar_subquery()
_LIGHT_EVENT = (defer(Event.payload), defer(Event.raw_body), defer(Event.headers), defer(Event.plans))
# How long a step that already ran keeps trying to record its result while the database
# is unreachable, rather than losing it (and running the step again later).
RECORD_PATIENCE_SECONDS = 120.0


def is_connection_error(exc: BaseException) -> bool:
    """The database could not be reached or gave no connection (not a bug in a step, not a conflict)."""
    if is_conflict(exc):
        return False
    if isinstance(exc, PoolTimeout | OperationalError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def is_retryable(exc: BaseException) -> bool:
    """No fault of the work: try it again later (a conflict or no database)."""
    return is_conflict(exc) or is_connection_error(exc)


@dataclass(frozen=True)
class Opened:
    """What a drain's first transaction found: the student whose steps to run (None: nothing to run)."""

    student_id: int | None


@dataclass
class Drained:
    """What a drain did: what its first transaction found, each touched event's status, and
    where the student went next."""

    opened: Opened | None = None
    statuses: dict[int, str] = field(default_factory=dict)
    handed_to: str | None = None  # the lane that continues this student's steps


class _NoHold:
    """For callers that hold the student lock themselves (``student_lock``)."""

    def __init__(self, rt: Runtime):
        self.sessions = rt.sessions

    @contextmanager
    def begin(self) -> Iterator[Session]:
        with self.sessions.begin() as session:
            yield session


@dataclass
class _Call:
    run_id: int
    connector: Connector
    step: Step
    ctx: StepContext
    log: dict  # what the step's log lines say about it


def drain_student(
    rt: Runtime,
    student_id: int | None,
    *,
    hold=None,
    lane: str | None = None,
    first: Callable[[Session], Opened] | None = None,
) -> Drained:
    """Run the open events of a student in order (the caller holds the student lock).

    ``first`` runs at the start of the first transaction (planning an event) and returns what
    it found (kept as ``Drained.opened``), among it the student to drain (None: nothing to
    drain). A step waiting for its automatic retry holds back the student's later events (so a
    late retry can never re-grant after a refund); a failed step holds back only its own
    event's later steps.
    """
    hold = hold or _NoHold(rt)
    drained = Drained()
    pending: tuple[int, StepResult, datetime] | None = None  # the last call's result, recorded next
    while True:
        patience = time.monotonic() + RECORD_PATIENCE_SECONDS
        delay, conflicts = 0.5, 0
        while True:
            try:
                with hold.begin() as session:
                    if first is not None:
                        drained.opened = first(session)
                        student_id = drained.opened.student_id
                        if student_id is None:
                            return drained
                    if pending is not None:
                        run = session.get(ActionRun, pending[0])
                        event = session.get(Event, run.event_id)
                        # Counted with its result: one UPDATE, and a stopped worker's try is no attempt.
                        run.attempts, run.started_at = run.attempts + 1, pending[2]
                        outcome = _record(rt, session, event, run, pending[1])
                        drained.statuses[event.id] = event.status
                        if outcome is Outcome.RETRYING:
                            return drained
                    call = _advance(rt, session, student_id, lane, drained)
                break
            except Exception as exc:
                # A step already ran: hold on to its result rather than losing it and running the
                # step again later. Nothing else retries here: the task does (the lock released).
                if pending is None:
                    raise
                if is_conflict(exc) and conflicts < CONFLICT_RETRIES:
                    # Rolled back, so no row lock is left; the buyer's lock is kept (released, it
                    # would let another task find this step in flight), for well under a second.
                    conflicts += 1
                    log.warning("transaction conflict while recording step %s; retrying", pending[0])
                    time.sleep(conflict_pause(conflicts))
                    continue
                if not is_connection_error(exc) or time.monotonic() > patience or rt.stopping.is_set():
                    raise
                log.warning("database unavailable while recording step %s; retrying in %.1fs", pending[0], delay)
                if hasattr(hold, "release_connection"):
                    hold.release_connection()  # no lock held across the wait
                rt.stopping.wait(delay)
                delay = min(delay * 2, 5.0)
        first, pending = None, None
        if call is None:
            return drained
        started = rt.now()
        with log_context(**call.log):  # a step's log lines (connectors' too) name the step
            pending = (call.run_id, _call_remote(rt, hold, call), started)


def run_student(rt: Runtime, student_id: int, *, lane: str | None = None) -> Drained:
    """A worker task's drain of one student: lock, run, hand over to a lane, post alerts."""
    from engine.pipeline.alerts import notify_alerts, take_raised
    from engine.pipeline.locks import StudentHold

    def drain() -> Drained:
        with StudentHold(rt.sessions) as hold:
            return drain_student(rt, student_id, hold=hold, lane=lane, first=lambda session: lock(hold, session))

    def lock(hold: StudentHold, session: Session) -> Opened:
        hold.lock(session, student_id)
        return Opened(student_id)

    drained = retry_conflicts(drain, f"student {student_id}")
    if drained.handed_to:
        rt.queue.hand_off(student_id, drained.handed_to)
    if take_raised():
        notify_alerts(rt)
    return drained


def _advance(rt: Runtime, session: Session, student_id: int, lane: str | None, drained: Drained) -> _Call | None:
    """Run local steps and finish events until a remote step is next; return that call."""
    while True:
        # The student's first open event and its first open step (None: the event has none left),
        # in one statement: this runs before every step.
        row = session.execute(
            select(Event, ActionRun)
            .options(*_LIGHT_EVENT)  # the body is not needed to run steps
            .outerjoin(ActionRun, and_(ActionRun.event_id == Event.id, ActionRun.status.in_(_OPEN_STEPS)))
            .where(Event.student_id == student_id, Event.status.in_(_OPEN_EVENTS))
            # In the order they were planned (creation order), which is not always arrival order.
            .order_by(_FIRST_STEP, Event.id, ActionRun.step_index)
            .limit(1)
            .execution_options(populate_existing=True)  # an admin's retry may have changed them
        ).first()
        if row is None:
            return None
        event, run = row
        now = rt.now()
        if run is None:
            event.status, event.processed_at = EventStatus.PROCESSED, now
            drained.statuses[event.id] = event.status
            continue
        drained.statuses[event.id] = event.status
        if run.status == RunStatus.RETRYING and run.retry_at and run.retry_at > now:
            rt.queue.schedule_drain(student_id, (run.retry_at - now).total_seconds())
            return None
        if run.status == RunStatus.RUNNING and run.action not in IDEMPOTENT_ACTIONS:
            # A worker died after the request was written: it may have gone out. Never resend on our own.
            interrupted = StepResult.failed(
                "worker.interrupted",
                "the worker stopped while this step's request was being sent",
                maybe_delivered=True,
            )
            outcome = _record(rt, session, event, run, interrupted)
            drained.statuses[event.id] = event.status
            if outcome is Outcome.RETRYING:
                return None
            continue
        membership = session.get(Membership, run.membership_id) if run.membership_id else None
        student = session.get(Student, event.student_id)
        local = LOCAL_ACTIONS.get(run.action)
        if local is not None:
            run.attempts, run.started_at = run.attempts + 1, now
            try:
                with session.begin_nested():  # a database error undoes the step, not its record
                    result = local(rt, session, run, membership, student)
            except Exception as exc:  # noqa: BLE001 - a bug in one step must not stop the others
                if is_retryable(exc):
                    raise
                log.exception("step %s failed (correlation %s)", run.id, event.correlation_id)
                result = StepResult.failed("engine.error", f"{type(exc).__name__}: {exc}", retryable=True)
            if _record(rt, session, event, run, result) is Outcome.RETRYING:
                drained.statuses[event.id] = event.status
                return None
            drained.statuses[event.id] = event.status
            continue
        step, skip = ledger.effective_step(session, run, membership)
        connector = rt.connector_for(step.action) if skip is None else None
        if skip is None and connector is None:
            # A class step with the course platform's webhook off is the engine's table alone.
            skip = classes.without_platform(step) or StepResult.failed(
                "engine.no_connector", f"no connector runs {step.action!r}"
            )
        if skip is not None:
            run.attempts, run.started_at = run.attempts + 1, now
            outcome = _record(rt, session, event, run, skip)
            drained.statuses[event.id] = event.status
            if outcome is Outcome.RETRYING:
                return None
            continue
        step_lane = rt.lane_for(connector)
        if step_lane is not None and step_lane != lane:
            drained.handed_to = step_lane  # that lane's threads wait for the budget, not ours
            return None
        if step.action in classes.CLASS_ACTIONS:
            step = classes.step_for_platform(step, run, membership, rt.rules.rules.classes)
        ctx = _context(event, run, membership, student)
        if "discord_id" in step.params:  # relink: act on the account linked before
            ctx = replace(ctx, student=replace(ctx.student, discord_id=step.params["discord_id"]))
        log_fields = {
            "event_id": event.id,
            "correlation_id": event.correlation_id,
            "student": event.email,
            # An event can touch several memberships (a bundle; a link): the step's own product.
            "product": membership.product_key if membership else event.product_key,
            "step": f"{run.step_index}:{run.action}",
        }
        return _Call(run.id, connector, step, ctx, log_fields)


def _call_remote(rt: Runtime, hold, call: _Call) -> StepResult:
    """Call the connector outside any transaction; mark a non-repeatable step just before it is sent."""
    in_flight = False
    ctx = call.ctx
    if call.step.action not in IDEMPOTENT_ACTIONS:

        def before_send() -> None:
            nonlocal in_flight
            if in_flight:
                return
            with hold.begin() as session:
                run = session.get(ActionRun, call.run_id)
                run.status, run.started_at = RunStatus.RUNNING, rt.now()
            in_flight = True

        def not_sent() -> None:
            nonlocal in_flight
            if not in_flight:
                return
            with hold.begin() as session:
                session.get(ActionRun, call.run_id).status = RunStatus.PENDING
            in_flight = False

        ctx = replace(ctx, before_send=before_send, not_sent=not_sent)
    try:
        return call.connector.run(call.step, ctx)
    except Exception as exc:  # noqa: BLE001 - connectors should not raise; survive if one does
        if not in_flight and is_retryable(exc):
            raise  # marking it failed: nothing was sent; the task retries the step later
        log.exception(
            "connector %s raised on step %s (correlation %s)", call.connector.name, call.run_id, ctx.correlation_id
        )
        idempotent = call.step.action in IDEMPOTENT_ACTIONS
        return StepResult.failed(
            f"{call.connector.name}.error",
            f"{type(exc).__name__}: {exc}",
            retryable=idempotent or not in_flight,
            maybe_delivered=not idempotent and in_flight,
        )


def _context(event: Event, run: ActionRun, membership: Membership | None, student: Student) -> StepContext:
    return StepContext(
        student=StudentRef(
            id=student.id,
            email=student.email,
            name=student.name,
            phone=student.phone,
            discord_id=student.discord_id,
            manychat_subscriber_id=student.manychat_subscriber_id,
        ),
        event_id=event.id,
        event_type=event.type or "",
        product_key=membership.product_key if membership else "",
        membership_id=membership.id if membership else None,
        action_run_id=run.id,
        correlation_id=event.correlation_id,
    )


def _record(rt: Runtime, session: Session, event: Event, run: ActionRun, result: StepResult) -> Outcome:
    """Store a step's result and its effects; decide what happens next."""
    now = rt.now()
    run.error, run.detail, run.finished_at = result.error, result.detail[:4000] or None, now
    run.result = {"retryable": result.retryable, "maybe_delivered": result.maybe_delivered, **result.data}
    subscriber_id = result.data.get("manychat_subscriber_id")
    if subscriber_id:
        student = session.get(Student, event.student_id)
        student.manychat_subscriber_id = str(subscriber_id)
    if result.status is not StepStatus.FAILED:
        run.status = result.status.value
        run.retry_at = None
        if run.action in classes.CLASS_ACTIONS:  # before the ledger: an unenroll is narrowed by it
            membership = session.get(Membership, run.membership_id) if run.membership_id else None
            classes.record_locally(session, run, membership, event.student_id, result, rt.rules.rules.classes, now)
        ledger.record(session, run, event.student_id, result)
        if event.status == EventStatus.RETRYING:
            event.status = EventStatus.PROCESSING
        return Outcome.NEXT
    if result.retryable and not result.maybe_delivered and run.attempts < MAX_ATTEMPTS:
        delay = rt.settings.retry_delay_seconds
        run.status, run.retry_at = RunStatus.RETRYING, now + timedelta(seconds=delay)
        event.status = EventStatus.RETRYING
        rt.queue.schedule_drain(event.student_id, delay)
        return Outcome.RETRYING
    run.status = RunStatus.FAILED
    event.status = EventStatus.FAILED
    event.reason = f"step {run.step_index} ({run.action}) failed: {result.error}"
    raise_alert(
        rt,
        session,
        kind=result.error or "step.failed",
        message=alert_texts.step_failed(event, run, result, retried=run.attempts >= MAX_ATTEMPTS),
        event_id=event.id,
        action_run_id=run.id,
        student_id=event.student_id,
    )
    return Outcome.FAILED
