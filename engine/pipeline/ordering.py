"""Per-student creation order: a late event is re-evaluated against the ordered history.

Hotmart does not deliver in order. Two mechanisms keep a membership equal to applying its
events in ``creation_date`` order (docs/architecture/index.md, "Per student, in order"):

* a fresh webhook settles for ``ORDER_SETTLE_SECONDS``; the student's waiting events are then
  planned together, in creation order, and a one-shot message of a transition that a later
  event of the same batch supersedes is skipped (:func:`engine.pipeline.settling.skip_superseded`);
* an event created before one already decided for the same membership (it arrived after the
  window) is folded in (:func:`reevaluate`): the membership's events are planned again in
  creation order from the initial state, and the membership converges to the result — its
  state, its access (a diff against the grant ledger), its timers — while flows and codes go
  out only for transitions that survive in that history and never ran before. An imported
  membership's history starts from its import's snapshot (:mod:`engine.pipeline.baseline`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from engine.db.models import Event, Membership, Student
from engine.lifecycle.inputs import EventInput
from engine.lifecycle.planner import Plan
from engine.pipeline.baseline import IMPORT_SOURCE, Baseline, baseline
from engine.pipeline.facts import TaskInputs, event_facts
from engine.pipeline.realized import DECIDED_STATUSES, expected, flow_name, is_flow, sent_by_plans, simulate
from engine.pipeline.runtime import Runtime
from engine.rules.action_types import PlannedStep
from engine.rules.actions import ACTIONS, ONE_SHOT, access_pairs, the_action
from engine.rules.model import Product, Rules
from engine.sources import PLATFORMS, SOURCES, is_platform

# (remove action, add action, ledger kind, params key), in the order converging steps run.
_ACCESS = [(remove.name, add.name, add.ledger.kind, add.ledger.param) for remove, add in access_pairs()]
# The steps a fold writes of its own: the timers it sets and cancels.
_SET_TIMER, _CANCEL_TIMERS = the_action(timer="set"), the_action(timer="cancel")


def _follows(action: str) -> bool:
    return ACTIONS[action].follows_transition


def order_key(event: Event) -> tuple[datetime, int]:
    """Creation order: Hotmart's creation_date (the engine's own events: when raised), then arrival."""
    return (event.occurred_at or event.received_at, event.id)


def of_student(student: Student):
    # A lead's first events (ignored before the student existed) carry the e-mail only.
    return or_(Event.student_id == student.id, and_(Event.student_id.is_(None), Event.email == student.email))


def _belongs(inp: EventInput | None, product_key: str, rules: Rules) -> bool:
    if inp is None:
        return False
    if inp.source in SOURCES:
        return inp.product is not None and inp.product.key == product_key
    return inp.product_key == product_key or inp.event_type in rules.student_events


def newest_decided_after(
    rt: Runtime, session: Session, student: Student, product_key: str, event: Event, inp: EventInput, inputs: TaskInputs
) -> datetime | None:
    """The creation date of the newest platform event of this membership already decided that was
    created after ``event``; None when ``event`` is not late. Ignored ones count: a refund ignored
    because it came first still follows its approval in creation order."""
    if not is_platform(inp.source) or inp.occurred_at is None:
        return None
    rows = session.scalars(
        select(Event).where(
            of_student(student),
            Event.source.in_(PLATFORMS),
            Event.status.in_(DECIDED_STATUSES),
            Event.occurred_at > inp.occurred_at,
            Event.id != event.id,
        )
    ).all()
    newest = None
    for row in rows:
        if row.product_key is not None:
            mine = row.product_key == product_key
        else:  # decided before planning (a lead, a refunded transaction): read the payload
            mine = _belongs(inputs.of(row), product_key, rt.rules.rules)
        if mine and (newest is None or row.occurred_at > newest):
            newest = row.occurred_at
    return newest


@dataclass
class _Item:
    event: Event
    inp: EventInput

    @property
    def key(self) -> tuple[datetime, int]:
        return order_key(self.event)


@dataclass
class _Folded:
    item: _Item
    plan: Plan


@dataclass
class _Fold:
    state: str
    applied: list[_Folded]
    grants: dict[str, set[str]]
    timers: dict[str, str]  # event type -> due_at
    fields: dict[str, Any]


def _history(rt: Runtime, session: Session, student: Student, product_key: str, event: Event, inputs: TaskInputs):
    rows = session.scalars(select(Event).where(of_student(student), Event.status.in_(DECIDED_STATUSES))).all()
    items = [_Item(event, inputs.of(event))]
    for row in rows:
        if row.id == event.id:
            continue
        row_inp = inputs.of(row)
        if _belongs(row_inp, product_key, rt.rules.rules):
            items.append(_Item(row, row_inp))
    return sorted(items, key=lambda item: item.key)


def _recorded_from_state(event: Event, product_key: str) -> str | None:
    """The state an import's onboarding event was planned from (the import decided it, not a
    transition from the snapshot's state)."""
    for entry in event.plans if isinstance(event.plans, list) else []:
        if isinstance(entry, dict) and entry.get("product") == product_key:
            return entry.get("from_state")
    return None


def _fold(rt: Runtime, student: Student, product: Product, items: list[_Item], start: Baseline) -> _Fold:
    planner = rt.rules.planner
    revoked: set[str] = set()  # purchases refunded so far in the history
    links = [item.key for item in items if item.inp.event_type == "DISCORD_LINKED"]
    # Linked without a DISCORD_LINKED event: imported (engine import-students) before any event.
    linked_from = min(links) if links else None
    always_linked = bool(student.discord_id) and linked_from is None
    state, applied = start.state, []
    grants: dict[str, set[str]] = defaultdict(set, {kind: set(ids) for kind, ids in start.grants.items()})
    timers: dict[str, str] = dict(start.timers)
    fields: dict[str, Any] = {}
    now = rt.now()
    for item in items:
        inp = item.inp
        source = SOURCES.get(inp.source)
        transaction = inp.fields.get("transaction") if source else None
        if transaction and inp.event_type in source.revoking_events:
            revoked.add(transaction)
        elif transaction in revoked and inp.event_type in source.granting_events:
            continue  # a refunded purchase never grants again
        if item.event.source == "timer":
            timers.pop(inp.event_type or "", None)  # this timer fired
        linked = always_linked or (linked_from is not None and item.key >= linked_from)
        facts = event_facts(
            now,
            inp,
            email=student.email,
            name=student.name,
            discord_id=student.discord_id if linked else None,
            transaction=fields.get("transaction"),  # as the membership's, event by event
        )
        from_state = state
        if item.event.source == IMPORT_SOURCE:
            from_state = _recorded_from_state(item.event, product.key) or state
        plan = planner.plan(inp.event_type or "", inp.fields, product, from_state, facts)
        if plan.ignored:
            continue
        applied.append(_Folded(item, plan))
        state = plan.to_state or state
        simulate(plan.steps, grants, timers)
        for name in ("transaction", "subscriber_code"):
            if inp.fields.get(name):
                fields[name] = inp.fields[name]
        if inp.fields.get("date_next_charge") and source and inp.event_type in source.paid_until_events:
            fields["paid_until"] = datetime.fromisoformat(inp.fields["date_next_charge"])
    return _Fold(state, applied, grants, timers, fields)


@dataclass
class Reevaluation:
    plan: Plan
    state: str
    fields: dict[str, Any]
    changed: bool
    history: list[dict[str, Any]] = field(default_factory=list)
    sent: list[tuple[int, str, list[str]]] = field(default_factory=list)
    alerted: list[tuple[int, str]] = field(default_factory=list)
    emitted: list[str] = field(default_factory=list)
    start: Baseline | None = None

    def to_dict(self) -> dict[str, Any]:
        imported = {}
        if self.start is not None and self.start.at is not None:  # the history starts at an import
            imported = {"imported": {"state": self.start.state, "at": self.start.at.isoformat()}}
        return {
            **self.plan.to_dict(),
            "reordered": {
                **imported,
                "history": self.history,
                "sent": self.sent,
                "alerted": self.alerted,
                "emitted": self.emitted,
            },
        }


def reevaluate(
    rt: Runtime,
    session: Session,
    student: Student,
    product: Product,
    membership: Membership | None,
    event: Event,
    inputs: TaskInputs,
) -> Reevaluation:
    """Fold the membership's events in creation order (``event`` included) and plan the steps
    that take the membership from what it is to what that history makes it."""
    rules = rt.rules.rules
    current = membership.state if membership else rules.initial
    inp = inputs.of(event)
    start = baseline(session, rules, product, membership)
    items = _history(rt, session, student, product.key, event, inputs)
    # Received before the import: the import placed the membership over it.
    covered = {item.event.id for item in items if start.covers(item.event.received_at)}
    result = _fold(rt, student, product, [item for item in items if item.event.id not in covered], start)
    changes = [i for i, folded in enumerate(result.applied) if folded.plan.to_state != folded.plan.from_state]
    surviving_from = changes[-1] if changes else 0
    realized = sent_by_plans(session, membership)

    steps: list[PlannedStep] = []
    grants, timers = expected(session, membership)
    unwanted = sorted(set(timers) - set(result.timers))
    if unwanted:
        steps.append(PlannedStep(_CANCEL_TIMERS, {"events": unwanted}))
    steps += [
        PlannedStep(_SET_TIMER, {"event": name, "due_at": due})
        for name, due in result.timers.items()
        if name not in timers
    ]
    extra = {"create_if_missing": True} if rules.create_missing_subscribers else {}
    removes, adds = [], []
    for remove, add, kind, key in _ACCESS:
        params = extra if kind == "manychat_tag" else {}
        if gone := sorted(grants[kind] - result.grants[kind]):
            removes.append(PlannedStep(remove, {key: gone, **params}))
        if new := sorted(result.grants[kind] - grants[kind]):
            adds.append(PlannedStep(add, {key: new, **params}))
    steps += removes + adds

    # Never a flow twice: a flow that went out for a transition the ordered history no longer
    # has (its event now takes another one, or none) stands in for the same flow of a new one.
    folded_pairs = {(f.item.event.id, f.plan.transition or "") for f in result.applied}
    held = Counter(
        flow for pair, flows in realized.sent.items() if pair in folded_pairs or pair[0] in covered for flow in flows
    )
    credit = realized.emitted - held
    history, new_sent, new_alerted, emitted = [], [], [], []
    own: Plan | None = None
    for index, folded in enumerate(result.applied):
        pair = (folded.item.event.id, folded.plan.transition or "")
        surviving = index >= surviving_from
        if folded.item.event.id == event.id:
            own = folded.plan
        history.append(
            {
                "event_id": pair[0],
                "event_type": folded.plan.event_type,
                "created": folded.item.key[0].isoformat(),
                "transition": pair[1],
                "from_state": folded.plan.from_state,
                "to_state": folded.plan.to_state,
                "superseded": not surviving,
            }
        )
        if surviving and pair not in realized.sent:
            messages = [s for s in folded.plan.steps if s.action in ONE_SHOT or _follows(s.action)]
            flows = [flow_name(s.action, s.params) for s in messages if is_flow(s.action) and not s.skip_reason]
            if flows and not Counter(flows) - credit:  # each already went out: send none of its messages again
                credit -= Counter(flows)
                messages = [s for s in messages if _follows(s.action)]
            else:
                emitted += flows
            steps += messages
            new_sent.append((*pair, flows))
        if pair not in realized.alerted:
            alerts = [s for s in folded.plan.steps if ACTIONS[s.action].admin_alert]
            if alerts:
                steps += alerts
                new_alerted.append(pair)

    plan = Plan(
        inp.event_type or "",
        product.key,
        current,
        result.state,
        transition=own.transition if own else None,
        conditions=own.conditions if own else [],
        steps=steps,
    )
    changed = result.state != current or bool(steps)
    return Reevaluation(plan, result.state, result.fields, changed, history, new_sent, new_alerted, emitted, start)
