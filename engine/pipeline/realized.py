"""What the engine has already done for a membership, the side a replay converges from: the
flows its earlier plans sent, and its access and timers once the steps already planned have run.
:func:`simulate` is how a list of steps changes access and timers, for those plans and for a fold
(:mod:`engine.pipeline.ordering`, :mod:`engine.service.imported_state`)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from engine.db.models import ActionRun, Event, Grant, Membership, ScheduledEvent
from engine.pipeline.ledger import RESOURCES
from engine.rules.action_types import PlannedStep
from engine.rules.actions import ACTIONS
from engine.statuses import EventStatus, RunStatus, TimerStatus

# Statuses of an event the engine has decided on (planned, applied or ignored). Not
# needs_attention: nothing was decided; its replay is planned (and folded) then.
DECIDED_STATUSES = (
    EventStatus.PROCESSING,
    EventStatus.RETRYING,
    EventStatus.PROCESSED,
    EventStatus.IGNORED,
    EventStatus.FAILED,
)
# Steps not done yet: what a membership still waits for. Written into the SQL as constants (not
# bound), so that even a generic plan of the prepared statement proves the partial index
# ix_action_runs_open_membership usable (migration 0010): no read of every open step of every student.
WAITING_STEPS = bindparam(
    "waiting_steps",
    (RunStatus.PENDING, RunStatus.RUNNING, RunStatus.RETRYING, RunStatus.FAILED),
    expanding=True,
    literal_execute=True,
)


def is_flow(action: str | None) -> bool:
    """A message a transition sends once (a flow): counted, so that none goes out twice."""
    declared = ACTIONS.get(action or "")
    return declared is not None and declared.product_flow


def flow_name(action: str, params: dict[str, Any]) -> str:
    return params[ACTIONS[action].main_param]


def simulate(steps: Iterable[PlannedStep], grants: dict[str, set[str]], timers: dict[str, str]) -> None:
    """What steps do to a membership's access and timers, as the ledger and timer table record it."""
    for step in steps:
        if step.skip_reason:
            continue  # the rules make it do nothing for this product
        if (use := RESOURCES.get(step.action)) is not None:
            kind, resources = use.kind, set(step.params.get(use.param) or [])
            if use.grants:
                grants[kind] |= resources
            elif "discord_id" not in step.params:  # a relink's removal leaves the ledger as it is
                grants[kind] -= resources
        elif ACTIONS[step.action].timer == "set":
            timers[step.params["event"]] = step.params["due_at"]
        elif ACTIONS[step.action].timer == "cancel":
            for name in step.params.get("events") or list(timers):
                timers.pop(name, None)


@dataclass
class Realized:
    """What earlier plans of the membership already sent."""

    # (event, transition) -> its flows, sent or standing in an earlier identical one
    sent: dict[tuple[int, str], list[str]] = field(default_factory=dict)
    alerted: set[tuple[int, str]] = field(default_factory=set)
    emitted: Counter = field(default_factory=Counter)  # flows that went out


def _flows(steps: Iterable[dict[str, Any]]) -> list[str]:
    return [flow_name(s["action"], s["params"]) for s in steps if is_flow(s.get("action")) and not s.get("skipped")]


def sent_by_plans(session: Session, membership: Membership | None) -> Realized:
    realized = Realized()
    if membership is None:
        return realized
    events = session.scalars(
        select(Event).where(Event.student_id == membership.student_id, Event.status.in_(DECIDED_STATUSES))
    ).all()
    for event in events:
        for entry in event.plans if isinstance(event.plans, list) else []:
            if not isinstance(entry, dict) or entry.get("membership_id") != membership.id:
                continue
            reordered = entry.get("reordered")
            if reordered:
                realized.sent.update({(e, t): flows for e, t, flows in reordered.get("sent", [])})
                realized.alerted |= {(e, t) for e, t in reordered.get("alerted", [])}
                realized.emitted.update(reordered.get("emitted", []))
            elif entry.get("transition") and not entry.get("ignored_reason"):
                pair = (event.id, entry["transition"])
                realized.alerted.add(pair)
                if not entry.get("superseded_by"):
                    realized.sent[pair] = _flows(entry.get("steps") or [])
                    realized.emitted.update(realized.sent[pair])
    return realized


def expected(session: Session, membership: Membership | None) -> tuple[dict[str, set[str]], dict[str, str]]:
    """The membership's access and timers once the steps already planned have run."""
    grants: dict[str, set[str]] = defaultdict(set)
    timers: dict[str, str] = {}
    if membership is None:
        return grants, timers
    for kind, resource in session.execute(
        select(Grant.kind, Grant.resource).where(Grant.membership_id == membership.id)
    ):
        grants[kind].add(resource)
    for name, due in session.execute(
        select(ScheduledEvent.event_type, ScheduledEvent.due_at).where(
            ScheduledEvent.membership_id == membership.id, ScheduledEvent.status == TimerStatus.PENDING
        )
    ):
        timers[name] = due.isoformat()
    waiting = session.scalars(
        select(ActionRun)
        .where(
            ActionRun.membership_id == membership.id,
            ActionRun.status.in_(WAITING_STEPS),
        )
        .order_by(ActionRun.id)
    ).all()
    simulate((PlannedStep(run.action, run.params) for run in waiting), grants, timers)
    return grants, timers
