"""``engine dry-run``: plan one event and pass its steps to recording connectors.

Also what ``dry-run --event`` shows of a stored event without touching the database here: the
decision as trace lines, and how a new decision differs from the one made at the time
(engine.service.replan reads the event and the student's data).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from connectors.base import RecordingConnector, Step, StepContext, StudentRef
from engine.lifecycle.inputs import EventInput, event_input
from engine.lifecycle.planner import Facts, Plan, Planner
from engine.rules.action_types import PlannedStep
from engine.rules.actions import ACTIONS
from engine.rules.model import Product, Rules
from engine.statuses import EventStatus

# Step parameters that are new each time an event is planned: not a difference in the decision.
_VOLATILE_PARAMS = frozenset({"code", "expires_at", "due_at"})


@dataclass
class DryRun:
    event: EventInput
    plan: Plan
    connector_calls: list[str] = field(default_factory=list)
    # When no transition applies from the given state: the states it would apply from.
    applies_from: list[str] = field(default_factory=list)
    rules_version: str | None = None  # the version of the rules that decided it

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.plan.to_dict(),
            "rules_version": self.rules_version,
            "email": self.event.email,
            "occurred_at": self.event.occurred_at.isoformat() if self.event.occurred_at else None,
            "input_problems": self.event.problems,
            "applies_from": self.applies_from,
        }

    def trace(self) -> str:
        plan, event = self.plan, self.event
        lines = [f"event       {plan.event_type}  ({event.source})"]
        if event.email:
            lines.append(f"student     {event.email}")
        for problem in event.problems:
            lines.append(f"warning     {problem}")
        lines.append(f"product     {plan.product or '-'}")
        lines += plan_lines(plan, applies_from=self.applies_from)
        if self.rules_version:
            lines.append(f"rules       {self.rules_version}")
        return "\n".join(lines)


def plan_lines(plan: Plan, *, applies_from: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The decision as the trace shows it: transition (or why ignored), conditions, steps.

    ``applies_from``: for an ignored event, the states a transition takes it from (a hint).
    """
    lines = []
    if plan.ignored:
        lines.append(f"state       {plan.from_state} (unchanged)")
        lines.append(f"ignored     {plan.ignored_reason}")
        if applies_from:
            lines.append(
                f"hint        {plan.event_type} applies from {', '.join(applies_from)}: try --state {applies_from[0]}"
            )
    else:
        lines.append(f"transition  {plan.transition}: {plan.from_state} -> {plan.to_state}")
    if plan.conditions:
        lines.append("conditions")
        for c in plan.conditions:
            kind = "if" if c.required else "unless"
            mark = "ok" if c.passed else "no"
            lines.append(f"  [{mark}] {c.transition}: {kind} {c.condition} = {str(c.value).lower()}")
    if plan.steps:
        lines.append("steps")
        for index, step in enumerate(plan.steps, 1):
            lines.append(f"  {index}. {step.action:<14} {_describe_params(step)}")
    elif not plan.ignored:
        lines.append("steps       (none)")
    return lines


def _describe_params(step: PlannedStep) -> str:
    if ACTIONS[step.action].timer == "cancel" and not step.params.get("events"):
        text = "all pending timers"
    else:
        text = ", ".join(f"{k}={v!r}" for k, v in step.params.items())
    return f"{text}  (skipped: {step.skip_reason})" if step.skip_reason else text


def states_where_it_applies(rules: Rules, event_type: str, product: Product | None) -> list[str]:
    """The states from which some transition takes ``event_type`` for ``product``'s kind."""
    sources: set[str] = set()
    for rule in rules.transitions:
        if event_type in rule.events and (product is None or rule.applies_to_kind(product.kind)):
            sources.update(rules.states if "*" in rule.sources else rule.sources)
    return [state for state in rules.states if state in sources]


def dry_run(
    body: Any,
    rules: Rules,
    *,
    state: str | None,
    linked: bool,
    now: datetime,
    previous_discord_id: str | None = None,
    source: str | None = None,
) -> DryRun:
    """``source``: the platform the payload comes from (engine.sources); None: its shape decides."""
    event = event_input(body, rules, source=source)
    facts = Facts(
        now=now,
        discord_linked=linked or bool(event.fields.get("discord_id")),
        discord_id=event.fields.get("discord_id") or ("(linked)" if linked else None),
        previous_discord_id=previous_discord_id,
        email=event.email or "",
        name=event.fields.get("name"),
    )
    plan = Planner(rules).plan(event.event_type or "(none)", event.fields, event.product, state, facts)
    if event.event_type is None:
        plan.ignored_reason = "no event type in the body"
        plan.steps = []
    recorder = RecordingConnector("dry-run")
    ctx = StepContext(
        StudentRef(id=None, email=event.email or ""), event_type=plan.event_type, product_key=plan.product or ""
    )
    for step in plan.steps:
        if not step.skip_reason:
            recorder.run(Step(step.action, step.params), ctx)
    applies_from: list[str] = []
    if plan.transition is None and event.event_type and event.product is not None:
        applies_from = [
            s for s in states_where_it_applies(rules, event.event_type, event.product) if s != plan.from_state
        ]
    return DryRun(event, plan, recorder.actions_called(), applies_from)


# --- then and now ----------------------------------------------------------------------------


def decision_differences(
    then: list[dict[str, Any]], now: list[dict[str, Any]], status: str, reason: str | None
) -> list[str]:
    """How the plans made now (``Plan.to_dict()``s) differ from those stored at the time, per product;
    ``status`` and ``reason`` are the stored event's."""
    if status in (EventStatus.RECEIVED, EventStatus.HELD) and not then:
        return [f"not decided yet (the event is {status}); now: " + "; ".join(map(_outcome, now))] if now else []
    then_by = {plan.get("product"): plan for plan in then}
    now_by = {plan.get("product"): plan for plan in now}
    differences: list[str] = []
    for product in [*then_by, *(p for p in now_by if p not in then_by)]:
        label = product or "(no product)"
        before, after = then_by.get(product), now_by.get(product)
        if before is None:
            why = f"{status}: {reason}" if reason else status
            differences.append(f"{label}: no plan at the time ({why}); now {_outcome(after)}")
            continue
        if after is None:
            differences.append(f"{label}: planned at the time ({_outcome(before)}); now not concerned")
            continue
        if before.get("from_state") != after.get("from_state"):
            differences.append(f"{label}: state then {before.get('from_state')}, now {after.get('from_state')}")
        if _outcome(before) != _outcome(after):
            differences.append(f"{label}: then {_outcome(before)}; now {_outcome(after)}")
        old_steps = Counter(_step_text(s) for s in before.get("steps") or [])
        new_steps = Counter(_step_text(s) for s in after.get("steps") or [])
        differences += [f"{label}: - {text}" for text in (old_steps - new_steps).elements()]
        differences += [f"{label}: + {text}" for text in (new_steps - old_steps).elements()]
    return differences


def _outcome(plan: dict[str, Any]) -> str:
    if plan.get("ignored_reason"):
        return f"ignored ({plan['ignored_reason']})"
    return f"{plan.get('transition')} -> {plan.get('to_state')}"


def _step_text(step: dict[str, Any]) -> str:
    params = {k: v for k, v in (step.get("params") or {}).items() if k not in _VOLATILE_PARAMS}
    return f"{step.get('action')} {json.dumps(params, ensure_ascii=False, sort_keys=True)}"
