"""The checks that read the rules as a whole, once every transition and product is built.

Each returns the problems it finds, located where the fix goes: a flow a product lacks in
the product file, an event without an outcome under ``ignore:``, an overlap at the second
transition. The per-element checks (an unknown state, a tag not in the catalogue ...) are
made while building, in :mod:`engine.rules.builder`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from itertools import combinations
from typing import Any

from engine.rules import messages
from engine.rules.actions import FLOW_ACTIONS
from engine.rules.model import Product, StepSpec, TransitionRule, flow_name, is_optional
from engine.rules.source import Problem, line_of


def duplicate_names(transitions: tuple[TransitionRule, ...]) -> list[Problem]:
    problems = []
    seen: dict[str, TransitionRule] = {}
    for rule in transitions:
        if rule.name in seen:
            message = f"transition name {rule.name!r} already used at line {seen[rule.name].line}"
            problems.append(Problem(rule.file, rule.line, message))
        seen.setdefault(rule.name, rule)
    return problems


def missing_flows(
    transitions: tuple[TransitionRule, ...],
    products: dict[str, Product],
    product_docs: dict[str, Any],
    lifecycle_file: str,
) -> list[Problem]:
    """Each product defines (or declines with `none`) every flow its transitions send.

    A missing flow is fixed in the product file, so it is reported there, once per flow,
    naming the transitions that send it; a step marked `optional: true` needs nothing.
    """
    problems = []
    users: dict[str, list[tuple[TransitionRule, StepSpec]]] = defaultdict(list)
    for rule in transitions:
        for step in rule.steps:
            if step.action in FLOW_ACTIONS:
                users[flow_name(step.args)].append((rule, step))
    declared = {name for p in products.values() for name in (*p.flows, *p.no_flows)}
    misspelt: set[str] = set()
    for flow, uses in users.items():
        match = messages.closest(flow, declared - set(users))
        if flow not in declared and match is not None:
            misspelt.add(flow)
            for step_line in sorted({step.line for _, step in uses}):
                problems.append(Problem(lifecycle_file, step_line, messages.flow_misspelled_in_step(flow, match)))
    for product in products.values():
        data = product_docs[product.key]
        unused = [name for name in product.flows if name not in users]
        for flow, uses in users.items():
            if flow in product.flows or flow in product.no_flows or flow in misspelt:
                continue
            needed_by = [r.name for r, step in uses if r.applies_to_kind(product.kind) and not is_optional(step)]
            if not needed_by:
                continue
            typo = messages.closest(flow, unused)
            if typo is not None:
                where = ["product", "flows", typo]
                problems.append(
                    Problem(product.file, line_of(data, where), messages.flow_misspelled_in_product(typo, flow))
                )
            else:
                names = list(dict.fromkeys(needed_by))
                line = line_of(data, ["product", "flows"])
                problems.append(Problem(product.file, line, messages.flow_for_product(flow, names)))
    return problems


def unreachable_states(
    transitions: tuple[TransitionRule, ...], initial: str, states: tuple[str, ...], lifecycle_file: str, data: Any
) -> list[Problem]:
    reached = {initial} | {rule.dest for rule in transitions if rule.dest}
    return [
        Problem(
            lifecycle_file,
            line_of(data, ["lifecycle", "states", index]),
            f"state {state!r} is unreachable: no transition leads to it (add one with `to: {state}`, "
            "or remove the state)",
        )
        for index, state in enumerate(states)
        if state not in reached
    ]


def overlapping_transitions(transitions: Iterable[TransitionRule], states: tuple[str, ...]) -> list[Problem]:
    """Two transitions on the same event from the same state whose conditions can both hold."""
    problems = []
    for first, second in combinations(transitions, 2):
        events = [e for e in first.events if e in second.events]
        if not events or not _kinds_overlap(first.kinds, second.kinds):
            continue
        common = _sources_overlap(first.sources, second.sources, states)
        if not common or _exclusive(first, second):
            continue
        problems.append(
            Problem(
                second.file,
                second.line,
                f"transition {second.name!r} overlaps {first.name!r} (line {first.line}) on "
                f"{events[0]} from {common[0]!r}: both conditions can hold, so the first one always "
                "wins; make their conditions exclusive (if/unless the same predicate)",
            )
        )
    return problems


def events_without_outcome(
    transitions: tuple[TransitionRule, ...],
    ignore: dict[str, str],
    source_events: Iterable[str],
    lifecycle_file: str,
    data: Any,
) -> list[Problem]:
    """Every one of ``source_events`` (the payment vocabulary every platform is read into: Hotmart's
    names) needs a transition or an ``ignore:`` entry."""
    handled = {e for rule in transitions for e in rule.events} | set(ignore)
    # The fix goes under `ignore:` (or a new transition): point there.
    line = line_of(data, ["lifecycle", "ignore"] if "ignore" in data["lifecycle"] else ["lifecycle"])
    return [
        Problem(
            lifecycle_file,
            line,
            f"payment event {event} has no transition and is not listed under ignore: give it a deliberate "
            "outcome (a transition, or an ignore entry with a reason)",
        )
        for event in sorted(set(source_events) - handled)
    ]


def _kinds_overlap(a: tuple[str, ...] | None, b: tuple[str, ...] | None) -> bool:
    return a is None or b is None or bool(set(a) & set(b))


def _sources_overlap(a: tuple[str, ...], b: tuple[str, ...], states: tuple[str, ...]) -> list[str]:
    expand = lambda s: set(states) if "*" in s else set(s)  # noqa: E731
    common = expand(a) & expand(b)
    return [state for state in states if state in common]


def _literals(rule: TransitionRule) -> set[tuple[str, bool]] | None:
    """The conjunction of (condition, polarity) a rule requires; None if not a plain conjunction."""
    literals: set[tuple[str, bool]] = set()
    for cond, polarity in ((rule.if_, True), (rule.unless, False)):
        if cond is None:
            continue
        parts = cond.children if cond.kind == "all" and polarity else (cond,)
        for part in parts:
            if part.kind == "not":
                literals.add((part.children[0].describe(), not polarity))
            elif part.kind in ("predicate", "compare"):
                literals.add((part.describe(), polarity))
            elif polarity is False and cond.kind == "all":
                return None
            else:
                return None
    return literals


def _exclusive(a: TransitionRule, b: TransitionRule) -> bool:
    """True when a's and b's conditions can never both hold (syntactically provable)."""
    # The same condition required by one and excluded by the other (`if: X` / `unless: X`).
    for first, second in ((a, b), (b, a)):
        if first.if_ is not None and second.unless is not None and first.if_ == second.unless:
            return True
    la, lb = _literals(a), _literals(b)
    if la is None or lb is None:
        return False
    return any((name, not polarity) in lb for name, polarity in la)
