"""The membership the rules give a student imported from a platform's records: the canonical
history the records tell (an approval, then a late payment or a cancellation) folded through the
planner from the initial state, as the webhooks would have been, the student linked or not.

The timers the history sets fire in the fold when they are due (a grace period over, a paid
period ended), except the onboarding's own (its reminder, its code's expiry): an imported student
has not been sent the onboarding yet, so nothing of it has elapsed. Pure: nothing is stored.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.lifecycle.access import ProductAccess, link_moves_on, product_resources
from engine.lifecycle.planner import Facts, Plan, Planner
from engine.pipeline.realized import simulate
from engine.rules.actions import ACTIONS, the_action
from engine.rules.model import Product, Rules
from engine.sources.canonical import PastEvent

# The step that draws the /registrar code, and the one that takes it back.
CODE_STEP = the_action(secret_params=frozenset({"code"}))
REVOKE_CODE_STEP = the_action(inverse=CODE_STEP)
_MAX_TIMERS = 50  # timers fired in one fold: rules whose timers set each other again end here


@dataclass(frozen=True)
class Onboarding:
    """The transition that issued the code the student still holds: the event it took, from where."""

    event_type: str
    fields: dict[str, Any]
    from_state: str
    timers: frozenset[str]  # the timers it sets (its reminder, its code's expiry)


@dataclass
class Decision:
    state: str
    transitions: list[str] = field(default_factory=list)
    grants: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    timers: dict[str, str] = field(default_factory=dict)  # still pending: event type -> due (ISO 8601)
    onboarding: Onboarding | None = None  # None: no code to send (linked, or never issued)
    has_access: bool = False

    @property
    def lifecycle_timers(self) -> dict[str, str]:
        """The pending timers besides the onboarding's."""
        own = self.onboarding.timers if self.onboarding else frozenset()
        return {name: due for name, due in self.timers.items() if name not in own}


def decide(
    rules: Rules,
    planner: Planner,
    access: ProductAccess,
    product: Product,
    history: tuple[PastEvent, ...],
    *,
    linked: bool,
    email: str,
    name: str | None,
    now: datetime,
) -> Decision:
    """Fold ``history`` (in time order) for one membership of ``product``; ``access``: the product's
    derived access (:func:`engine.lifecycle.access.derive`), which says whether the state reached
    still holds anything of the product."""
    decision = Decision(rules.initial)
    fired = 0

    def apply(event_type: str, fields: dict[str, Any], at: datetime) -> None:
        facts = Facts(now=at, discord_linked=linked, email=email, name=name)
        plan = planner.plan(event_type, fields, product, decision.state, facts)
        if plan.ignored:
            return
        decision.transitions.append(plan.transition or "")
        decision.state = plan.to_state or decision.state
        simulate(plan.steps, decision.grants, decision.timers)
        done = {step.action for step in plan.steps if not step.skip_reason}
        if CODE_STEP in done and not linked:
            decision.onboarding = Onboarding(event_type, fields, plan.from_state or rules.initial, _timers_set(plan))
        elif REVOKE_CODE_STEP in done:
            decision.onboarding = None

    def fire_due(until: datetime) -> None:
        nonlocal fired
        while fired < _MAX_TIMERS:
            own = decision.onboarding.timers if decision.onboarding else frozenset()
            due = sorted((when, name) for name, when in decision.timers.items() if name not in own)
            if not due or datetime.fromisoformat(due[0][0]) > until:
                return
            when, name = due[0]
            del decision.timers[name]
            fired += 1
            apply(name, {"due_at": when}, datetime.fromisoformat(when))

    for fact in sorted(history, key=lambda f: f.at):
        fire_due(fact.at)
        apply(fact.event_type, fact.fields, fact.at)
    fire_due(now)
    if decision.onboarding is not None and not link_moves_on(rules, product, decision.state):
        decision.onboarding = None  # a code a link would do nothing with (access ended): none to send
    held = access.of(decision.state, linked).may & product_resources(product)
    decision.has_access = bool(held) or decision.onboarding is not None
    return decision


def onboarding_plan(
    planner: Planner,
    product: Product,
    onboarding: Onboarding,
    *,
    email: str,
    name: str | None,
    now: datetime,
    code: str,
) -> Plan:
    """The onboarding's transition planned again now, with a real code: its steps are what the
    student is sent (the code, its field, the flow) and the timers it sets, from now on."""
    facts = Facts(now=now, discord_linked=False, email=email, name=name, token=code)
    return planner.plan(onboarding.event_type, onboarding.fields, product, onboarding.from_state, facts)


def _timers_set(plan: Plan) -> frozenset[str]:
    return frozenset(
        step.params["event"] for step in plan.steps if ACTIONS[step.action].timer == "set" and not step.skip_reason
    )
