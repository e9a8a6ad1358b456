"""Planning, an admitted event's stage: its transition and steps for each membership it concerns.

The new states and the planned steps are written in the caller's transaction, which holds the
student's lock; the steps then run in order (:mod:`engine.pipeline.execution`). An event created
before one already decided for its membership is folded into the ordered history instead
(:mod:`engine.pipeline.ordering`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, object_session

from engine.db.models import ActionRun, Event, Membership, Student, utcnow
from engine.lifecycle.inputs import EventInput
from engine.lifecycle.planner import Plan
from engine.pipeline import attention
from engine.pipeline.admission import admit, ignore, log_decision, revoked_transaction
from engine.pipeline.facts import TaskInputs, student_facts
from engine.pipeline.ordering import newest_decided_after, reevaluate
from engine.pipeline.runtime import Runtime
from engine.pipeline.settling import BatchEntry, settled_events, skip_superseded
from engine.rules.action_types import PlannedStep
from engine.rules.model import Rules
from engine.sources import SOURCES, is_platform
from engine.statuses import EventStatus, RunStatus


@dataclass
class Target:
    membership: Membership | None  # None: would be created if the plan applies
    product_key: str


def plan_waiting(rt: Runtime, session: Session, student_id: int, event_id: int, inputs: TaskInputs) -> None:
    """Plan the student's settled events in creation order, in the caller's transaction (it holds the lock)."""
    student = session.get(Student, student_id)
    batch: list[BatchEntry] = []
    for event in settled_events(rt, session, student, event_id):
        inp = inputs.of(event)
        if inp is None:
            continue  # its own task ignores it
        if event.student_id is None and not admit(rt, session, event, inp).goes_on:
            continue
        if event.student_id is not None:
            plan_event(rt, session, event, event.student_id, inputs, batch)
    skip_superseded(batch)


def plan_event(
    rt: Runtime,
    session: Session,
    event: Event,
    student_id: int,
    inputs: TaskInputs,
    batch: list[BatchEntry] | None = None,
) -> None:
    """Plan one admitted event; ``batch`` collects the plans of events planned together (creation order)."""
    _plan(rt, session, event, student_id, inputs, batch)
    log_decision(session, event)


def event_targets(rules: Rules, student: Student, inp: EventInput) -> list[Target] | str | None:
    """The memberships an event concerns; why none (str); None for a product the rules do not
    define (any more). Also ``engine dry-run --event``."""
    # Queried, not the cached relationship: an earlier event of the same batch may have created one.
    found = object_session(student).scalars(
        select(Membership).where(Membership.student_id == student.id).order_by(Membership.id)
    )
    memberships = {m.product_key: m for m in found}
    if inp.product is not None:
        return [Target(memberships.get(inp.product.key), inp.product.key)]
    if inp.event_type in rules.student_events:  # declared in the rules
        targets = [Target(m, m.product_key) for m in memberships.values() if m.product_key in rules.products]
        return targets or "the student has no membership"
    return None  # a product the rules do not define (any more)


def _plan(
    rt: Runtime,
    session: Session,
    event: Event,
    student_id: int,
    inputs: TaskInputs,
    batch: list[BatchEntry] | None,
) -> None:
    rules, planner = rt.rules.rules, rt.rules.planner
    inp = inputs.of(event)
    event.rules_version = rt.rules.version
    student = session.get(Student, student_id)
    _refresh_student(student, inp)
    targets = event_targets(rt.rules.rules, student, inp)
    if isinstance(targets, str):
        ignore(event, targets)
        return
    if targets is None:
        attention.unknown_product_key(rt, session, event, inp.product_key)
        return
    for target in targets:
        # Nothing is decided for a membership the rules cannot place: the whole event waits.
        if target.membership is not None and target.membership.state not in rules.states:
            attention.unknown_state(rt, session, event, target.product_key, target.membership.state)
            return
    now = rt.now()
    plans: list[dict[str, Any]] = []
    reasons: list[str] = []
    # A replayed event keeps the steps of its earlier plan (audit); new ones are numbered after.
    last_step = select(func.coalesce(func.max(ActionRun.step_index), -1)).where(ActionRun.event_id == event.id)
    step_index = session.scalar(last_step) + 1
    applied = False
    for target in targets:
        product = rules.products[target.product_key]
        membership = target.membership
        state = membership.state if membership else rules.initial
        late = newest_decided_after(rt, session, student, product.key, event, inp, inputs)
        lead = inp.lead_plan
        reevaluated = None
        if late is not None:
            # Created before an event already decided: fold it into the ordered history.
            reevaluated = reevaluate(rt, session, student, product, membership, event, inputs)
            plan = reevaluated.plan
            if not reevaluated.changed:
                revoked = revoked_transaction(session, inp, event, any_date=True)
                if revoked:  # the purchase's own verdict, as when the refund was known in time
                    ignore(event, revoked, [plan.to_dict()])
                    return
                plan = Plan(inp.event_type or "", product.key, state, state, ignored_reason=_stale_reason(inp, late))
        elif lead is not None and membership is None and lead.product == product.key:
            plan = lead  # this new student's plan, decided when the event was admitted
        else:
            facts = student_facts(now, inp, student, membership)
            plan = planner.plan(inp.event_type or "", inp.fields, product, state, facts)
        runs: list[ActionRun] = []
        if plan.ignored:
            reasons.append(f"{product.key}: {plan.ignored_reason}")
        else:
            applied = True
            membership = membership or _new_membership(session, student, product.key, rules.initial)
            _apply(membership, plan, inp, event, now)
            if reevaluated is not None:
                for name, value in reevaluated.fields.items():
                    setattr(membership, name, value)  # the newest in creation order, not the late one's
            runs = planned_runs(event.id, membership.id, plan.steps, step_index, now)
            step_index += len(runs)
            session.add_all(runs)
        entry = reevaluated.to_dict() if reevaluated is not None and not plan.ignored else plan.to_dict()
        entry["membership_id"] = membership.id if membership else None
        plans.append(entry)
        if batch is not None and membership is not None and reevaluated is None and not plan.ignored:
            batch.append(BatchEntry(event, membership.id, entry, runs))
    event.plans = plans
    event.product_key = inp.product.key if inp.product else inp.product_key
    if not applied:
        ignore(event, "; ".join(reasons), plans)
    elif step_index:
        event.status = EventStatus.PROCESSING
    else:
        event.status, event.processed_at = EventStatus.PROCESSED, utcnow()


def planned_runs(
    event_id: int, membership_id: int, steps: list[PlannedStep], first_index: int, now: datetime
) -> list[ActionRun]:
    """A plan's steps as the event's outbox rows, numbered from ``first_index``, to run in order."""
    return [
        ActionRun(
            event_id=event_id,
            membership_id=membership_id,
            step_index=index,
            action=step.action,
            params=step.params,
            # the rules skip it for this product (an optional flow): recorded, never run
            status=RunStatus.SKIPPED if step.skip_reason else RunStatus.PENDING,
            detail=step.skip_reason,
            finished_at=now if step.skip_reason else None,
        )
        for index, step in enumerate(steps, start=first_index)
    ]


def _refresh_student(student: Student, inp: EventInput) -> None:
    # Contact data improves over time (a later event may carry the phone the first lacked).
    if not is_platform(inp.source):
        return
    if inp.fields.get("name") and not student.name:
        student.name = inp.fields["name"]
    if inp.fields.get("phone") and not student.phone:
        student.phone = inp.fields["phone"]


def _new_membership(session: Session, student: Student, product_key: str, initial: str) -> Membership:
    membership = Membership(student_id=student.id, product_key=product_key, state=initial)
    session.add(membership)
    session.flush()
    return membership


def late_reason(inp: EventInput, membership: Membership | None) -> str | None:
    """Created before the membership's last applied event (``engine dry-run --event`` says so):
    the worker folds such an event into the ordered history instead of applying it on top."""
    if membership is None or membership.last_event_at is None or inp.occurred_at is None:
        return None
    if inp.occurred_at < membership.last_event_at:
        return (
            f"created {inp.occurred_at.isoformat()}, before the last applied event "
            f"({membership.last_event_at.isoformat()})"
        )
    return None


def _stale_reason(inp: EventInput, newer: datetime) -> str:
    return f"stale: created {inp.occurred_at.isoformat()}, before the last applied event ({newer.isoformat()})"


def _apply(membership: Membership, plan: Plan, inp: EventInput, event: Event, now: datetime) -> None:
    if plan.to_state and plan.to_state != membership.state:
        membership.state = plan.to_state
        membership.state_changed_at = now
    membership.last_event_id = event.id
    newer = membership.last_event_at is None or (inp.occurred_at and inp.occurred_at > membership.last_event_at)
    if is_platform(inp.source) and inp.occurred_at and newer:
        membership.last_event_at = inp.occurred_at
    if inp.fields.get("transaction"):
        membership.transaction = inp.fields["transaction"]
    if inp.fields.get("subscriber_code"):
        membership.subscriber_code = inp.fields["subscriber_code"]
    paid_until = inp.fields.get("date_next_charge")
    source = SOURCES.get(inp.source)
    if paid_until and source is not None and event.type in source.paid_until_events:
        membership.paid_until = datetime.fromisoformat(paid_until)
