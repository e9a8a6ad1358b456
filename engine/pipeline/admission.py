"""Admission, an event's first stage: does it concern a student, and which one?

A body that cannot be read, an event the rules refuse, a purchase already refunded, a lead no
rule acts on: each is ignored here with its reason (or needs attention: a product nobody
claims). Otherwise the event gets its student, created when a rule will act.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from engine.db.models import Event, Student, utcnow
from engine.db.upsert import insert_for
from engine.lifecycle.inputs import EventInput
from engine.lifecycle.planner import refusal
from engine.pipeline import attention
from engine.pipeline.facts import TaskInputs, event_facts
from engine.pipeline.ordering import order_key
from engine.pipeline.runtime import Runtime
from engine.rules import unmanaged
from engine.sources import PLATFORMS, SOURCES, is_platform
from engine.statuses import EventStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Admission:
    """The verdict: ``student_id`` set while the event goes on to planning (status ``received``)."""

    student_id: int | None
    status: str

    @property
    def goes_on(self) -> bool:
        return self.student_id is not None and self.status == EventStatus.RECEIVED


def ignore(event: Event, reason: str, plans: list[dict[str, Any]] | None = None) -> Admission:
    """Decide the event is ignored, keeping why (and what each membership's plan said)."""
    event.status = EventStatus.IGNORED
    # Fields the parser could not use (kept in `reason` by admit) stay visible after the verdict.
    event.reason = f"{reason} (unusable input: {event.reason})" if event.reason else reason
    event.plans = plans
    event.processed_at = utcnow()
    return Admission(None, EventStatus.IGNORED)


def admit(rt: Runtime, session: Session, event: Event, inp: EventInput | None) -> Admission:
    """Decide whether the event concerns a student; create the student when it will act."""
    admission = _admit(rt, session, event, inp)
    if not admission.goes_on:
        log_decision(session, event)
    return admission


def log_decision(session: Session, event: Event) -> None:
    """One INFO line per decided event, so an operator can follow it in the logs even with every
    connector off: what it was, whose, each membership's move, how many steps, which rules."""
    if session.info.get(attention.PREVIEW):
        return
    head = f"event {event.id} {event.type or '(no type)'} from {event.source}"
    if event.status in (EventStatus.PROCESSING, EventStatus.PROCESSED):
        entries = [entry for entry in event.plans or [] if not entry.get("ignored_reason")]
        moves = ", ".join(f"{e.get('product')} {e.get('from_state') or '-'} → {e.get('to_state')}" for e in entries)
        steps = sum(len(entry.get("steps") or []) for entry in entries)
        log.info("%s: student %s, %s, %d steps (rules %s)", head, event.student_id, moves, steps, event.rules_version)
    else:
        log.info("%s: %s: %s (rules %s)", head, event.status, event.reason, event.rules_version)


def _admit(rt: Runtime, session: Session, event: Event, inp: EventInput | None) -> Admission:
    event.rules_version = rt.rules.version
    if inp is None:
        return ignore(event, "body is not JSON")
    rules = rt.rules.rules
    if inp.problems:
        event.reason = "; ".join(inp.problems)[:2000]  # kept even if the event goes on
    if not inp.event_type:
        return ignore(event, "no event type in the body")
    if inp.ignored_reason:
        return ignore(event, inp.ignored_reason)
    # A webhook names its product; an internal event may concern every membership (its targets decide).
    refused = refusal(rules, inp.event_type, inp.fields, inp.product) if is_platform(inp.source) else None
    if refused and inp.product is None and inp.event_type in rules.known_events:
        return _no_product(rt, session, event, inp)  # needs attention unless the rules say to ignore it
    if refused:
        return ignore(event, refused)
    revoked = revoked_transaction(session, inp, event)
    if revoked:
        return ignore(event, revoked)
    if event.student_id is not None:
        return Admission(event.student_id, EventStatus.RECEIVED)
    if not inp.email:
        return ignore(event, "no buyer e-mail in the payload")
    student = session.scalar(select(Student).where(Student.email == inp.email))
    if student is None:
        # A lead (abandoned cart, unpaid boleto...) does not become a student unless a rule acts.
        facts = event_facts(rt.now(), inp, email=inp.email, name=inp.fields.get("name"), discord_id=None)
        plan = rt.rules.planner.plan(inp.event_type, inp.fields, inp.product, None, facts)
        if plan.ignored:
            return ignore(event, plan.ignored_reason or "ignored", [plan.to_dict()])
        student, created = _upsert_student(session, inp)
        inp.lead_plan = plan if created else None
    event.student_id = student.id
    return Admission(student.id, EventStatus.RECEIVED)


def admit_earlier(rt: Runtime, session: Session, event: Event, inputs: TaskInputs) -> None:
    """A webhook that alone would be a lead's (a refund, nothing to refund) lets the buyer's
    settled webhooks created before it be admitted first: an approval among them makes the
    student the refund belongs to, and the refund then follows it in creation order."""
    inp = inputs.of(event)
    if not is_platform(event.source) or not event.email or inp is None or inp.product is None or not inp.event_type:
        return
    cutoff = utcnow() - timedelta(seconds=rt.settings.order_settle_seconds)
    waiting = session.scalars(
        select(Event).where(
            Event.email == event.email,
            Event.source.in_(PLATFORMS),
            Event.status == EventStatus.RECEIVED,
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
        admit(rt, session, other, inputs.of(other))


def _no_product(rt: Runtime, session: Session, event: Event, inp: EventInput) -> Admission:
    """A platform's event no product claims: ignored only when the rules say so."""
    rules = rt.rules.rules
    product_id = inp.fields.get("product_id")
    if inp.fields.get("is_test"):
        return ignore(event, "Hotmart test event (product id 0)")
    if product_id and str(product_id) in rules.unmanaged_products.get(inp.source, ()):
        return ignore(event, f"product id {product_id} is unmanaged ({unmanaged.listing(inp.source)})")
    if inp.event_type in rules.ignore and not any(inp.event_type in t.events for t in rules.transitions):
        return ignore(event, rules.ignore[inp.event_type])  # ignored whatever the product
    attention.unknown_product(rt, session, event, product_id)
    return Admission(None, event.status)


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
