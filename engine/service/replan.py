"""``engine dry-run --event ID``: plan a stored event again, on the student's real data.

The event is planned against the given rules with the student's current memberships,
Discord link and pending timers, exactly as the worker would plan it (nothing runs, no
code is issued), and compared with what was decided at the time (``events.plans``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.authoring.dry_run import decision_differences, plan_lines
from engine.db.models import Event, Membership, ScheduledEvent, Student
from engine.lifecycle.inputs import event_input
from engine.lifecycle.planner import Facts, Plan, Planner
from engine.pipeline.admission import revoked_transaction
from engine.pipeline.facts import student_facts
from engine.pipeline.planning import event_targets, late_reason
from engine.rules.action_types import TOKEN_PLACEHOLDER
from engine.rules.model import Rules
from engine.service.redaction import Redactor, planned_codes, student_codes
from engine.settings import Settings
from engine.sources import is_platform
from engine.statuses import TimerStatus


@dataclass
class TargetPlan:
    """One membership the event concerns, as it is now, and the plan it would get."""

    plan: Plan
    membership_id: int | None
    state_since: datetime | None
    pending_timers: list[tuple[str, datetime]]

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.plan.to_dict(),
            "membership_id": self.membership_id,
            "state_since": self.state_since.isoformat() if self.state_since else None,
            "pending_timers": [{"event": name, "due_at": due.isoformat()} for name, due in self.pending_timers],
        }


@dataclass
class Replan:
    event: Event
    email: str | None
    discord_linked: bool
    targets: list[TargetPlan] = field(default_factory=list)
    then: list[dict[str, Any]] = field(default_factory=list)  # the stored plans, codes hidden
    notes: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)
    rules_version: str | None = None  # of the rules planning it now

    def to_dict(self) -> dict[str, Any]:
        event = self.event
        return {
            "event": {
                "id": event.id,
                "type": event.type,
                "source": event.source,
                "status": event.status,
                "reason": event.reason,
                "received_at": event.received_at.isoformat(),
                "occurred_at": event.occurred_at.isoformat() if event.occurred_at else None,
                "rules_version": event.rules_version,
            },
            "rules_version": self.rules_version,
            "student": {"email": self.email, "discord_linked": self.discord_linked} if self.email else None,
            "plans": [target.to_dict() for target in self.targets],
            "then": self.then,
            "notes": self.notes,
            "differences": self.differences,
        }

    def trace(self) -> str:
        event = self.event
        lines = [
            f"event       #{event.id} {event.type or '(no type)'}  ({event.source}), "
            f"received {event.received_at:%Y-%m-%d %H:%M:%S}",
            f"at the time {event.status}" + (f": {event.reason}" if event.reason else ""),
        ]
        if event.rules_version or self.rules_version:
            then, now = event.rules_version or "(unknown)", self.rules_version or "(unknown)"
            lines.append(f"rules       then {then}, now {now}")
        if self.email:
            lines.append(f"student     {self.email}  (Discord {'linked' if self.discord_linked else 'not linked'})")
        for note in self.notes:
            lines.append(f"note        {note}")
        for target in self.targets:
            lines.append(f"product     {target.plan.product or '-'}")
            if target.membership_id is None:
                lines.append("membership  none yet (would be created)")
            else:
                lines.append(f"membership  #{target.membership_id}, since {target.state_since:%Y-%m-%d %H:%M:%S}")
            for name, due in target.pending_timers:
                lines.append(f"timer       {name} due {due:%Y-%m-%d %H:%M:%S}")
            lines += plan_lines(target.plan)
        if self.differences:
            lines.append("differences from what was decided at the time")
            lines += [f"  {difference}" for difference in self.differences]
        else:
            lines.append("same decision as at the time")
        return "\n".join(lines)


def replan_event(
    session: Session, event_id: int, rules: Rules, *, now: datetime, rules_version: str | None = None
) -> Replan:
    """Plan stored event ``event_id`` on today's data with ``rules`` (version ``rules_version``);
    raises LookupError if there is no such event."""
    event = session.get(Event, event_id)
    if event is None:
        raise LookupError(f"event {event_id} not found")
    then = _hide_codes(event.plans if isinstance(event.plans, list) else [])
    if event.payload is None:
        replan = Replan(event, event.email, False, then=then, notes=["the body is not JSON: nothing to plan"])
        replan.rules_version = rules_version
        replan.differences = decision_differences(then, [], event.status, event.reason)
        return replan
    inp = event_input(event.payload, rules)
    student = session.get(Student, event.student_id) if event.student_id else None
    email = inp.email or event.email
    if student is None and email:
        student = session.scalar(select(Student).where(Student.email == email))
    replan = Replan(event, student.email if student else email, bool(student and student.discord_id), then=then)
    replan.rules_version = rules_version
    replan.notes += [f"input: {problem}" for problem in inp.problems]
    revoked = revoked_transaction(session, inp, event)
    if revoked:
        replan.notes.append(f"the worker would ignore it: {revoked}")
    planner = Planner(rules)
    event_type = inp.event_type or "(none)"
    if student is None:
        # Not a student yet: planned from the initial state, as the worker decides on a lead.
        plan = planner.plan(event_type, inp.fields, inp.product, None, Facts(now=now, email=email or ""))
        replan.targets.append(TargetPlan(plan, None, None, []))
    else:
        targets = event_targets(rules, student, inp)
        if targets is None:
            targets = f"product {inp.product_key or '(none)'} is not defined in the rules"
        if isinstance(targets, str):
            plan = Plan(event_type, inp.product_key, None, None, ignored_reason=targets)
            replan.targets.append(TargetPlan(plan, None, None, []))
            targets = []
        for target in targets:
            replan.targets.append(_target(session, planner, rules, inp, student, target, now, replan.notes))
    if inp.event_type is None:
        for target in replan.targets:
            target.plan.ignored_reason, target.plan.steps = "no event type in the body", []
    replan.differences = decision_differences(
        then, [t.plan.to_dict() for t in replan.targets], event.status, event.reason
    )
    return replan


def _target(session, planner, rules, inp, student, target, now, notes) -> TargetPlan:
    membership: Membership | None = target.membership
    product = rules.products[target.product_key]
    state = membership.state if membership else None
    if state in rules.renamed_states:
        notes.append(f"{product.key}: state {state!r} is renamed {rules.renamed_states[state]!r} by these rules")
        state = rules.renamed_states[state]
    if is_platform(inp.source) and (late := late_reason(inp, membership)):
        notes.append(f"{product.key}: {late}: the worker re-evaluates it against the ordered history")
    facts = student_facts(now, inp, student, membership, with_token=False)
    plan = planner.plan(inp.event_type or "(none)", inp.fields, product, state, facts)
    timers: list[tuple[str, datetime]] = []
    if membership is not None:
        timers = [
            (name, due)
            for name, due in session.execute(
                select(ScheduledEvent.event_type, ScheduledEvent.due_at)
                .where(ScheduledEvent.membership_id == membership.id, ScheduledEvent.status == TimerStatus.PENDING)
                .order_by(ScheduledEvent.due_at, ScheduledEvent.id)
            )
        ]
    return TargetPlan(
        plan, membership.id if membership else None, membership.state_changed_at if membership else None, timers
    )


def redacted_replan(
    session: Session, settings: Settings, event_id: int, rules: Rules, *, now: datetime, rules_version: str | None
) -> dict[str, Any]:
    """:func:`replan_event` as the admin page shows it (``Replan.to_dict()``), with the configured
    secrets and the student's codes redacted as in :func:`engine.service.events.event_detail`;
    raises LookupError if there is no such event."""
    replan = replan_event(session, event_id, rules, now=now, rules_version=rules_version)
    event = replan.event
    codes = student_codes(session, [event.student_id]) + planned_codes(event.action_runs, event.plans)
    return Redactor.for_settings(settings, codes)(replan.to_dict())


# --- then and now ----------------------------------------------------------------------------


def _hide_codes(plans: list[Any]) -> list[dict[str, Any]]:
    """The stored plans with the onboarding codes they issued replaced by ``{token}``."""
    codes = planned_codes([], plans)

    def hide(value: Any) -> Any:
        if isinstance(value, str):
            for code in codes:
                value = value.replace(code, TOKEN_PLACEHOLDER)
            return value
        if isinstance(value, dict):
            return {key: hide(item) for key, item in value.items()}
        if isinstance(value, list):
            return [hide(item) for item in value]
        return value

    return [hide(plan) for plan in plans if isinstance(plan, dict)]
