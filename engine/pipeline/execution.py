"""Run the planned steps (the outbox), in order, one student at a time.

Each step is marked ``running`` before its connector is called and ``done`` / ``skipped``
/ ``failed`` after, so a worker killed mid-event resumes at the first step not done and
never repeats a done one. Failure policy (the owner's rule): one retry after a delay,
then the step is ``failed``, the event's later steps wait, and an admin is alerted. A
step that may have reached the other side and is not idempotent (a ManyChat flow) is
never retried automatically.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from connectors.base import StepContext, StepResult, StepStatus, StudentRef
from engine.db.models import ActionRun, Event, Membership, Student, utcnow
from engine.logs import log_context
from engine.pipeline import ledger
from engine.pipeline.alerts import raise_alert, step_failed_text
from engine.pipeline.local_actions import LOCAL_ACTIONS
from engine.pipeline.runtime import Runtime
from engine.rules.actions import IDEMPOTENT as IDEMPOTENT_ACTIONS  # declared per action
from engine.statuses import OPEN_EVENT_STATUSES, OPEN_RUN_STATUSES

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 2  # the first run and one automatic retry
OPEN_STATUSES = OPEN_EVENT_STATUSES


def drain_student(rt: Runtime, student_id: int) -> None:
    """Run the open events of a student in order (the caller holds the student lock).

    A step waiting for its automatic retry holds back the student's later events (so a
    late retry can never re-grant after a refund); a failed step holds back only its own
    event's later steps.
    """
    with rt.sessions.begin() as session:
        # In the order they were planned (creation order), which is not always arrival order.
        first_step = select(func.min(ActionRun.id)).where(ActionRun.event_id == Event.id).scalar_subquery()
        event_ids = session.scalars(
            select(Event.id)
            .where(Event.student_id == student_id, Event.status.in_(OPEN_STATUSES))
            .order_by(first_step, Event.id)
        ).all()
    for event_id in event_ids:
        if run_event_steps(rt, event_id) == "retrying":
            return


def run_event_steps(rt: Runtime, event_id: int) -> str:
    """Run the event's steps not done yet; returns processed | failed | retrying."""
    while True:
        with rt.sessions.begin() as session:
            event = session.get(Event, event_id)
            run = session.scalars(
                select(ActionRun)
                .where(ActionRun.event_id == event_id, ActionRun.status.in_(OPEN_RUN_STATUSES))
                .order_by(ActionRun.step_index)
                .limit(1)
            ).first()
            if run is None:
                if event.status in OPEN_STATUSES:
                    event.status, event.processed_at = "processed", utcnow()
                return event.status
            now = rt.now()
            if run.status == "retrying" and run.retry_at and run.retry_at > now:
                rt.schedule_drain(event.student_id, (run.retry_at - now).total_seconds())
                return "retrying"
            outcome = None
            if run.status == "running" and run.action not in IDEMPOTENT_ACTIONS:
                # A worker died while sending: the message may have gone out. Never resend on our own.
                interrupted = StepResult.failed(
                    "worker.interrupted",
                    "the worker stopped while this step was running",
                    maybe_delivered=True,
                )
                outcome = _record(rt, session, event, run, interrupted)
            else:
                run.status, run.attempts, run.started_at = "running", run.attempts + 1, now
            run_id = run.id
            context = {
                "event_id": event.id,
                "correlation_id": event.correlation_id,
                "student": event.email,
                # An event can touch several memberships (a bundle; a link): the step's own product.
                "product": session.get(Membership, run.membership_id).product_key
                if run.membership_id
                else event.product_key,
                "step": f"{run.step_index}:{run.action}",
            }
        if outcome is None:
            with log_context(**context):  # a step's log lines (connectors' too) name the step
                outcome = _execute(rt, run_id)
        if outcome != "next":
            return outcome


def _execute(rt: Runtime, run_id: int) -> str:
    """Run one step: prepare (short transaction), call (no transaction), record."""
    with rt.sessions.begin() as session:
        run = session.get(ActionRun, run_id)
        event = session.get(Event, run.event_id)
        membership = session.get(Membership, run.membership_id) if run.membership_id else None
        student = session.get(Student, event.student_id)
        ctx = _context(event, run, membership, student)
        local = LOCAL_ACTIONS.get(run.action)
        if local is not None:
            try:
                with session.begin_nested():  # a database error undoes the step, not its record
                    result = local(rt, session, run, membership, student)
            except Exception as exc:  # noqa: BLE001 - a bug in one step must not stop the others
                log.exception("step %s failed (correlation %s)", run.id, ctx.correlation_id)
                result = StepResult.failed("engine.error", f"{type(exc).__name__}: {exc}", retryable=True)
            return _record(rt, session, event, run, result)
        step, skip = ledger.effective_step(session, run, membership)
    if skip is not None:
        result = skip
    else:
        connector = rt.connector_for(step.action)
        if connector is None:
            result = StepResult.failed("engine.no_connector", f"no connector runs {step.action!r}")
        else:
            if "discord_id" in step.params:  # relink: act on the account linked before
                ctx = replace(ctx, student=replace(ctx.student, discord_id=step.params["discord_id"]))
            try:
                result = connector.run(step, ctx)
            except Exception as exc:  # noqa: BLE001 - connectors should not raise; survive if one does
                log.exception(
                    "connector %s raised on step %s (correlation %s)", connector.name, run_id, ctx.correlation_id
                )
                result = StepResult.failed(
                    f"{connector.name}.error",
                    f"{type(exc).__name__}: {exc}",
                    retryable=step.action in IDEMPOTENT_ACTIONS,
                    maybe_delivered=step.action not in IDEMPOTENT_ACTIONS,
                )
    with rt.sessions.begin() as session:
        run = session.get(ActionRun, run_id)
        event = session.get(Event, run.event_id)
        return _record(rt, session, event, run, result)


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


def _record(rt: Runtime, session: Session, event: Event, run: ActionRun, result: StepResult) -> str:
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
        ledger.record(session, run, event.student_id, result)
        if event.status == "retrying":
            event.status = "processing"
        return "next"
    if result.retryable and not result.maybe_delivered and run.attempts < MAX_ATTEMPTS:
        delay = rt.settings.retry_delay_seconds
        run.status, run.retry_at = "retrying", now + timedelta(seconds=delay)
        event.status = "retrying"
        rt.schedule_drain(event.student_id, delay)
        return "retrying"
    run.status = "failed"
    event.status = "failed"
    event.reason = f"step {run.step_index} ({run.action}) failed: {result.error}"
    raise_alert(
        rt,
        session,
        kind=result.error or "step.failed",
        message=step_failed_text(event, run, result, retried=run.attempts >= MAX_ATTEMPTS),
        event_id=event.id,
        action_run_id=run.id,
        student_id=event.student_id,
    )
    return "failed"
