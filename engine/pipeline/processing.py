"""Process one event: plan it for each membership it touches, store the outbox, run it.

The plan, the new states and the planned steps are written in ONE transaction, under
the student's lock; the steps then run in order (see :mod:`engine.pipeline.execution`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, or_, select
from sqlalchemy.orm import Session, object_session

from engine.db.conflicts import retry_conflicts
from engine.db.models import ActionRun, Event, Membership, Student, utcnow
from engine.db.upsert import insert_for
from engine.lifecycle.inputs import EventInput, event_input
from engine.lifecycle.planner import Facts, Plan, refusal
from engine.logs import log_context
from engine.onboarding.codes import new_code
from engine.pipeline import attention
from engine.pipeline.alerts import notify_alerts, take_raised
from engine.pipeline.execution import OPEN_STATUSES, drain_student, is_retryable
from engine.pipeline.locks import StudentHold, event_buyer
from engine.pipeline.ordering import (
    BatchEntry,
    newest_decided_after,
    order_key,
    reevaluate,
    skip_superseded,
)
from engine.pipeline.rules_fit import fit_database
from engine.pipeline.runtime import Runtime
from engine.rules.model import Rules
from engine.sources import SOURCES

log = logging.getLogger(__name__)

# A fresh webhook never waits longer than this many settle windows after its own arrival.
SETTLE_CAP = 3


@dataclass
class Target:
    membership: Membership | None  # None: would be created if the plan applies
    product_key: str


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
    local steps; each remote step's result; the unlock.

    The buyer's lock is taken before anything of theirs is written (this event included):
    the lock order of ``engine.db.locks``.
    """
    seen: dict[str, Any] = {}

    def plan(session: Session) -> int | None:
        # Whose event it is, read before the lock; the event itself is read under it.
        found = session.execute(select(Event.email, Event.student_id, Event.status).where(Event.id == event_id)).first()
        if found is None:
            seen["status"] = "missing"
            return None
        if found.status in ("received", *OPEN_STATUSES):
            buyer = event_buyer(session, found.email, found.student_id)
            if buyer:  # none: a body with no e-mail, which concerns nobody (ignored below)
                hold.lock_buyer(session, buyer)
        event = session.get(Event, event_id)
        seen["status"] = event.status
        if event.status == "held":
            return None
        if event.status == "received" and not rt.rules.available:
            attention.rules_unavailable(rt, session, event, rt.rules.load_error)
            seen["status"] = event.status
            return None
        if event.status != "received":
            return _drained_student(event)
        wait = _settle_wait(rt, session, event)
        if wait > 0:  # planned with the student's other fresh events
            seen["status"], seen["wait"] = event.status, wait
            return None
        # Parsed once here; planning reuses it.
        inp = event_input(event.payload, rt.rules.rules, source=event.source) if event.payload is not None else None
        _prepare_earlier(rt, session, event, inp)
        student_id, status = _prepare(rt, session, event, inp)
        if status != "received" or student_id is None or inp is None:
            seen["status"] = event.status
            return None
        hold.lock(session, student_id)  # the same buyer: already held
        _plan_waiting(rt, session, student_id, event_id, inp)
        seen["status"] = event.status
        return _drained_student(event)

    def _drained_student(event: Event) -> int | None:
        if event.status not in OPEN_STATUSES or event.student_id is None:
            return None
        seen["student_id"] = event.student_id
        return event.student_id

    with StudentHold(rt.sessions) as hold:
        drained = drain_student(rt, None, hold=hold, first=plan)
    if "wait" in seen:
        rt.schedule_event(event_id, seen["wait"])
    if drained.handed_to and "student_id" in seen:
        rt.hand_off(seen["student_id"], drained.handed_to)
    return drained.statuses.get(event_id, seen.get("status", "missing"))


# Not planned yet; a constant in the SQL, so that a generic plan still uses the partial index.
_RECEIVED = Event.status.in_(bindparam("received", ("received",), expanding=True, literal_execute=True))


def _settle_wait(rt: Runtime, session: Session, event: Event) -> float:
    """Seconds a fresh webhook still waits before anything is decided: until the newest webhook
    for the same buyer is ORDER_SETTLE_SECONDS old (events crossing in flight then go in
    creation order), at most SETTLE_CAP windows after its own arrival. Wall-clock times."""
    window = rt.settings.order_settle_seconds
    if window <= 0 or event.source != "hotmart" or not event.email:
        return 0.0
    newest = session.scalar(
        select(func.max(Event.received_at)).where(
            Event.email == event.email, Event.status == "received", Event.source == "hotmart"
        )
    )
    window_td = timedelta(seconds=window)
    newest = max(newest or event.received_at, event.received_at)
    settled = min(newest + window_td, event.received_at + SETTLE_CAP * window_td)
    return max((settled - utcnow()).total_seconds(), 0.0)


def _prepare_earlier(rt: Runtime, session: Session, event: Event, inp: EventInput | None) -> None:
    """A webhook that alone would be a lead's (a refund, nothing to refund) lets the buyer's
    settled webhooks created before it be prepared first: an approval among them makes the
    student the refund belongs to, and the refund then follows it in creation order."""
    if event.source != "hotmart" or not event.email or inp is None or inp.product is None or not inp.event_type:
        return
    cutoff = utcnow() - timedelta(seconds=rt.settings.order_settle_seconds)
    waiting = session.scalars(
        select(Event).where(
            Event.email == event.email,
            Event.source == "hotmart",
            Event.status == "received",
            Event.student_id.is_(None),
            Event.id != event.id,
            Event.received_at <= cutoff,
        )
    ).all()
    earlier = sorted((other for other in waiting if order_key(other) < order_key(event)), key=order_key)
    if not earlier or session.scalar(select(Student.id).where(Student.email == event.email)) is not None:
        return
    facts = event_facts(rt.now(), inp, email=event.email, name=inp.fields.get("name"), discord_id=None)
    if not rt.rules.planner.plan(inp.event_type, inp.fields, inp.product, None, facts).ignored:
        return  # it makes the student itself
    for other in earlier:
        other_inp = event_input(other.payload, rt.rules.rules) if other.payload is not None else None
        _prepare(rt, session, other, other_inp)


def _plan_waiting(rt: Runtime, session: Session, student_id: int, event_id: int, inp: EventInput) -> None:
    """Plan the student's settled events in creation order, in the caller's transaction (it holds the lock)."""
    cutoff = utcnow() - timedelta(seconds=rt.settings.order_settle_seconds)
    student = session.get(Student, student_id)
    settled = or_(Event.received_at <= cutoff, Event.id == event_id)
    # The student's own, and a lead's earlier ones (the e-mail only): two queries, each on its
    # partial index of received events (one with an OR between them would read every one).
    waiting = [
        *session.scalars(select(Event).where(_RECEIVED, Event.student_id == student.id, settled)),
        *session.scalars(
            select(Event).where(_RECEIVED, Event.student_id.is_(None), Event.email == student.email, settled)
        ),
    ]
    batch: list[BatchEntry] = []
    for event in sorted(waiting, key=order_key):
        if event.id == event_id:
            event_inp = inp
        elif event.payload is None:
            continue  # its own task ignores it
        else:
            event_inp = event_input(event.payload, rt.rules.rules)
        if event.student_id is None and _prepare(rt, session, event, event_inp)[1] != "received":
            continue
        if event.student_id is not None:
            _plan(rt, session, event, event.student_id, event_inp, batch)
    skip_superseded(batch)


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
        event.status, event.reason, event.plans = "received", None, None
        if not rt.rules.available:
            attention.rules_unavailable(rt, session, event, rt.rules.load_error)
        else:
            inp = event_input(event.payload, rt.rules.rules, source=event.source) if event.payload is not None else None
            student_id, status = _prepare(rt, session, event, inp)
            if status == "received" and student_id is not None and inp is not None:
                _plan(rt, session, event, student_id, inp)
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


def _ignore(event: Event, reason: str, plans: list[dict[str, Any]] | None = None) -> tuple[None, str]:
    event.status = "ignored"
    # Fields the parser could not use (kept in `reason` by _prepare) stay visible after the verdict.
    event.reason = f"{reason} (unusable input: {event.reason})" if event.reason else reason
    event.plans = plans
    event.processed_at = utcnow()
    return None, "ignored"


def _prepare(rt: Runtime, session: Session, event: Event, inp: EventInput | None) -> tuple[int | None, str]:
    """Decide whether the event concerns a student; create the student when it will act."""
    event.rules_version = rt.rules.version
    if inp is None:
        return _ignore(event, "body is not JSON")
    rules = rt.rules.rules
    if inp.problems:
        event.reason = "; ".join(inp.problems)[:2000]  # kept even if the event goes on
    if not inp.event_type:
        return _ignore(event, "no event type in the body")
    # A webhook names its product; an internal event may concern every membership (its targets decide).
    refused = refusal(rules, inp.event_type, inp.fields, inp.product) if inp.source == "hotmart" else None
    if refused and inp.product is None and inp.event_type in rules.known_events:
        return _no_product(rt, session, event, inp)  # needs attention unless the rules say to ignore it
    if refused:
        return _ignore(event, refused)
    revoked = revoked_transaction(session, inp, event)
    if revoked:
        return _ignore(event, revoked)
    if event.student_id is not None:
        return event.student_id, "received"
    if not inp.email:
        return _ignore(event, "no buyer e-mail in the payload")
    student = session.scalar(select(Student).where(Student.email == inp.email))
    if student is None:
        # A lead (abandoned cart, unpaid boleto...) does not become a student unless a rule acts.
        facts = event_facts(rt.now(), inp, email=inp.email, name=inp.fields.get("name"), discord_id=None)
        plan = rt.rules.planner.plan(inp.event_type, inp.fields, inp.product, None, facts)
        if plan.ignored:
            return _ignore(event, plan.ignored_reason or "ignored", [plan.to_dict()])
        student, created = _upsert_student(session, inp)
        inp.lead_plan = plan if created else None
    event.student_id = student.id
    return student.id, "received"


def _no_product(rt: Runtime, session: Session, event: Event, inp: EventInput) -> tuple[None, str]:
    """A Hotmart event no product claims: ignored only when the rules say so."""
    rules = rt.rules.rules
    product_id = inp.fields.get("product_id")
    if inp.fields.get("is_test"):
        return _ignore(event, "Hotmart test event (product id 0)")
    if product_id and str(product_id) in rules.unmanaged_products:
        return _ignore(event, f"product id {product_id} is unmanaged (catalog.unmanaged_products)")
    if inp.event_type in rules.ignore and not any(inp.event_type in t.events for t in rules.transitions):
        return _ignore(event, rules.ignore[inp.event_type])  # ignored whatever the product
    return attention.unknown_product(rt, session, event, product_id)


def revoked_transaction(session: Session, inp: EventInput, event: Event, *, any_date: bool = False) -> str | None:
    """A refunded or charged-back purchase never grants again, whatever order events arrive in.

    A refund created after the approval is the approval's future: the approval, arriving late,
    is folded into the ordered history, where the refund revokes it (``any_date`` names the
    refund then). A refund created before a granting event of its purchase (a redelivered
    approval, a warranty completion) keeps it from granting at all.
    """
    transaction = inp.fields.get("transaction")
    source = SOURCES.get(inp.source)
    if source is None or inp.event_type not in source.granting_events or not transaction:
        return None
    query = select(Event.id).where(
        Event.transaction == transaction, Event.type.in_(source.revoking_events), Event.id != event.id
    )
    if not any_date and inp.occurred_at is not None:
        query = query.where(or_(Event.occurred_at.is_(None), Event.occurred_at <= inp.occurred_at))
    revoking = session.scalar(query.order_by(Event.id).limit(1))
    if revoking is None:
        return None
    return f"stale: transaction {transaction} was refunded or charged back (event {revoking})"


def _upsert_student(session: Session, inp: EventInput) -> tuple[Student, bool]:
    """The student of this e-mail, and whether this call created it."""
    insert = insert_for(session)
    now = utcnow()
    created = session.execute(
        insert(Student)
        .values(
            email=inp.email, name=inp.fields.get("name"), phone=inp.fields.get("phone"), created_at=now, updated_at=now
        )
        .on_conflict_do_nothing(index_elements=["email"])
        .returning(Student.id)
    ).scalar()
    return session.scalars(select(Student).where(Student.email == inp.email)).one(), created is not None


def event_facts(
    now: datetime, inp: EventInput, *, email: str, name: str | None, discord_id: str | None, with_token: bool = True
) -> Facts:
    """What the planner knows besides the event. ``with_token``: draw the code an issue_token step
    stores (a dry-run leaves the placeholder)."""
    return Facts(
        now=now,
        discord_linked=bool(discord_id),
        discord_id=inp.fields.get("discord_id") or discord_id,
        previous_discord_id=inp.fields.get("previous_discord_id"),
        email=email,
        name=name,
        token=new_code() if with_token else None,
    )


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
    inp: EventInput,
    batch: list[BatchEntry] | None = None,
) -> None:
    """Plan one event; ``batch`` collects the plans of events planned together (creation order)."""
    rules, planner = rt.rules.rules, rt.rules.planner
    event.rules_version = rt.rules.version
    student = session.get(Student, student_id)
    _refresh_student(student, inp)
    targets = event_targets(rt.rules.rules, student, inp)
    if isinstance(targets, str):
        _ignore(event, targets)
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
        late = newest_decided_after(rt, session, student, product.key, event, inp)
        lead = inp.lead_plan
        reevaluated = None
        if late is not None:
            # Created before an event already decided: fold it into the ordered history.
            reevaluated = reevaluate(rt, session, student, product, membership, event, inp, event_facts)
            plan = reevaluated.plan
            if not reevaluated.changed:
                revoked = revoked_transaction(session, inp, event, any_date=True)
                if revoked:  # the purchase's own verdict, as when the refund was known in time
                    _ignore(event, revoked, [plan.to_dict()])
                    return
                plan = Plan(inp.event_type or "", product.key, state, state, ignored_reason=_stale_reason(inp, late))
        elif lead is not None and membership is None and lead.product == product.key:
            plan = lead  # this new student's plan, decided when the event was admitted
        else:
            facts = event_facts(now, inp, email=student.email, name=student.name, discord_id=student.discord_id)
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
            for step in plan.steps:
                runs.append(
                    ActionRun(
                        event_id=event.id,
                        membership_id=membership.id,
                        step_index=step_index,
                        action=step.action,
                        params=step.params,
                        # the rules skip it for this product (an optional flow): recorded, never run
                        status="skipped" if step.skip_reason else "pending",
                        detail=step.skip_reason,
                        finished_at=now if step.skip_reason else None,
                    )
                )
                step_index += 1
            session.add_all(runs)
        entry = reevaluated.to_dict() if reevaluated is not None and not plan.ignored else plan.to_dict()
        entry["membership_id"] = membership.id if membership else None
        plans.append(entry)
        if batch is not None and membership is not None and reevaluated is None and not plan.ignored:
            batch.append(BatchEntry(event, membership.id, entry, runs))
    event.plans = plans
    event.product_key = inp.product.key if inp.product else inp.product_key
    if not applied:
        _ignore(event, "; ".join(reasons), plans)
    elif step_index:
        event.status = "processing"
    else:
        event.status, event.processed_at = "processed", utcnow()


def _refresh_student(student: Student, inp: EventInput) -> None:
    # Contact data improves over time (a later event may carry the phone the first lacked).
    if inp.source != "hotmart":
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
    if inp.source == "hotmart" and inp.occurred_at and newer:
        membership.last_event_at = inp.occurred_at
    if inp.fields.get("transaction"):
        membership.transaction = inp.fields["transaction"]
    if inp.fields.get("subscriber_code"):
        membership.subscriber_code = inp.fields["subscriber_code"]
    paid_until = inp.fields.get("date_next_charge")
    source = SOURCES.get(inp.source)
    if paid_until and source is not None and event.type in source.paid_until_events:
        membership.paid_until = datetime.fromisoformat(paid_until)
