"""``engine test``: admins' own test cases for the rules, run with the planner only (no I/O).

A case gives a starting membership (product, state, linked or not), one or more events in
sequence (inline, or a JSON body file), and what must happen after each: the transition, the
state, the steps (a subset in order, or exactly), or "ignored" with a reason pattern. Files
live in ``rules/tests/*.yaml`` and are validated by ``engine/authoring/rule_tests.schema.json``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from engine.lifecycle.inputs import event_input
from engine.lifecycle.planner import Facts, Plan, Planner
from engine.rules.actions import ACTIONS
from engine.rules.loader import RULE_TESTS_DIR
from engine.rules.model import Product, Rules, parse_duration
from engine.rules.source import Problem, line_of, load_yaml

SCHEMA_PATH = Path(__file__).with_name("rule_tests.schema.json")

DEFAULT_NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
LINKED_DISCORD_ID = "80351110224678912"
OTHER_DISCORD_ID = "80351110224678999"


@dataclass
class Coverage:
    """Which transitions and ignore entries the cases exercised."""

    transitions: set[str] = field(default_factory=set)
    ignored_events: set[str] = field(default_factory=set)

    def uncovered(self, rules: Rules) -> tuple[list[str], list[str]]:
        transitions = [t.name for t in rules.transitions if t.name not in self.transitions]
        ignores = [event for event in rules.ignore if event not in self.ignored_events]
        return transitions, ignores


@dataclass
class Report:
    files: int = 0
    cases: int = 0
    failures: list[Problem] = field(default_factory=list)
    coverage: Coverage = field(default_factory=Coverage)

    @property
    def ok(self) -> bool:
        return not self.failures


def rule_test_files(rules_dir: Path) -> list[Path]:
    folder = Path(rules_dir) / RULE_TESTS_DIR
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def run_rule_tests(rules: Rules, rules_dir: Path | str) -> Report:
    """Run every case under ``rules_dir/tests``; failures are located ``file:line``."""
    rules_dir = Path(rules_dir)
    planner = Planner(rules)
    report = Report()
    display_root = rules_dir.name or str(rules_dir)
    for path in rule_test_files(rules_dir):
        display = f"{display_root}/{path.relative_to(rules_dir).as_posix()}"
        report.files += 1
        data, problems = load_yaml(path, display)
        if data is None and not problems:
            problems = [Problem(display, 1, "empty file")]
        problems += _schema_problems(data, display) if data is not None else []
        if problems:
            report.failures += problems
            continue
        for index, case in enumerate(data["tests"]):
            report.cases += 1
            runner = _CaseRunner(rules, planner, path, display, data, ("tests", index), report.coverage)
            report.failures += runner.run(case)
    return report


def coverage_warnings(rules: Rules, rules_dir: Path | str) -> list[str]:
    """What ``engine check`` says about transitions and ignore entries no rule test exercises."""
    if not rule_test_files(Path(rules_dir)):
        return [f"no rule tests in {Path(rules_dir) / RULE_TESTS_DIR}: `engine test` has nothing to run"]
    report = run_rule_tests(rules, rules_dir)
    transitions, ignores = report.coverage.uncovered(rules)
    by_name = {t.name: t for t in rules.transitions}
    warnings = [
        f"{by_name[name].file}:{by_name[name].line}: transition {name!r} is not covered by any rule test"
        for name in transitions
    ]
    warnings += [f"ignore entry for {event} is not covered by any rule test" for event in ignores]
    return warnings


# --- one case ---------------------------------------------------------------------------


class _CaseRunner:
    def __init__(self, rules, planner, path, display, document, where, coverage):
        self.rules: Rules = rules
        self.planner: Planner = planner
        self.path: Path = path
        self.display: str = display
        self.document = document
        self.where: tuple = where
        self.coverage: Coverage = coverage

    def _problem(self, path: tuple, message: str) -> Problem:
        return Problem(self.display, line_of(self.document, self.where + path), message)

    def run(self, case: dict[str, Any]) -> list[Problem]:
        name = case["name"]
        state = case.get("state") or self.rules.initial
        if state not in self.rules.states:
            return [self._problem(("state",), f"case {name!r}: state {state!r} is not in the rules")]
        product_key = case.get("product")
        product = self.rules.products.get(product_key) if product_key else None
        if product_key and product is None:
            return [self._problem(("product",), f"case {name!r}: product {product_key!r} is not in the rules")]
        linked = bool(case.get("linked", False))
        discord_id = LINKED_DISCORD_ID if linked else None
        transaction = None  # the membership's: the last one an applied event carried
        now = _parse_time(case.get("now")) or DEFAULT_NOW
        failures: list[Problem] = []
        for index, step in enumerate(case["events"]):
            at = ("events", index)
            if step.get("after"):
                now += parse_duration(step["after"])
            try:
                event_type, fields, event_product = self._event(step, product)
            except ValueError as exc:
                return failures + [self._problem(at, f"case {name!r}: {exc}")]
            previous = step.get("previous_discord_id")
            if event_type == "DISCORD_LINKED":
                # The account the code was typed from: a new one when the case names the old one.
                event_discord_id = OTHER_DISCORD_ID if previous else (discord_id or LINKED_DISCORD_ID)
            else:
                event_discord_id = discord_id
            facts = Facts(
                now=now,
                discord_linked=linked or event_type == "DISCORD_LINKED",
                discord_id=event_discord_id,
                previous_discord_id=previous,
                email="ana.exemplo@example.com",
                name="Ana",
                transaction=transaction,
            )
            plan = self.planner.plan(event_type, fields, event_product, state, facts)
            self._cover(plan)
            label = f"case {name!r}, event {index + 1} ({event_type})"
            for key, message in _compare(plan, step["expect"]):
                failures.append(self._problem(at + ("expect", key), f"{label}: {message}"))
            if not plan.ignored:
                state = plan.to_state or state
                transaction = fields.get("transaction") or transaction
            if event_type == "DISCORD_LINKED" and not plan.ignored:
                linked, discord_id = True, facts.discord_id
        return failures

    def _event(self, step: dict[str, Any], product: Product | None) -> tuple[str, dict[str, Any], Product | None]:
        fields: dict[str, Any] = {}
        event_type = step.get("event")
        if step.get("payload"):
            file = (self.path.parent / step["payload"]).resolve()
            try:
                body = json.loads(file.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ValueError(f"cannot read payload {step['payload']}: {exc}") from exc
            parsed = event_input(body, self.rules)
            event_type = event_type or parsed.event_type
            fields = dict(parsed.fields)
            product = product or parsed.product
        if not event_type:
            raise ValueError("the payload has no event type")
        fields.update(step.get("fields") or {})
        fields["event_type"] = event_type
        if product is None:
            raise ValueError("no product: give the case a product, or a payload whose product the rules know")
        return event_type, fields, product

    def _cover(self, plan: Plan) -> None:
        if plan.transition:
            self.coverage.transitions.add(plan.transition)
        elif plan.ignored and plan.ignored_reason == self.rules.ignore.get(plan.event_type):
            self.coverage.ignored_events.add(plan.event_type)


# --- expectations -----------------------------------------------------------------------


def _compare(plan: Plan, expect: dict[str, Any]) -> list[tuple[str, str]]:
    """(expectation key, message) for every expectation the plan does not meet."""
    out: list[tuple[str, str]] = []
    got_ignored = f"ignored ({plan.ignored_reason})" if plan.ignored else f"transition {plan.transition!r}"
    if "ignored" in expect:
        wanted = expect["ignored"]
        if wanted is False and plan.ignored:
            out.append(("ignored", f"expected a transition, got {got_ignored}"))
        elif wanted is not False and not plan.ignored:
            out.append(("ignored", f"expected ignored, got {got_ignored}"))
        elif isinstance(wanted, str) and plan.ignored and not re.search(wanted, plan.ignored_reason or ""):
            out.append(("ignored", f"expected the reason to match {wanted!r}, got {plan.ignored_reason!r}"))
    if "transition" in expect and plan.transition != expect["transition"]:
        out.append(("transition", f"expected transition {expect['transition']!r}, got {got_ignored}"))
    if "state" in expect:
        state = plan.from_state if plan.ignored else plan.to_state
        if state != expect["state"]:
            out.append(("state", f"expected state {expect['state']!r}, got {state!r}"))
    planned = [(s.action, s.params) for s in plan.steps]
    if "steps" in expect:
        message = _match_steps(planned, expect["steps"], exact=bool(expect.get("exact_steps")))
        if message:
            out.append(("steps", message))
    for action in expect.get("no_steps") or []:
        if any(name == action for name, _ in planned):
            out.append(("no_steps", f"expected no {action} step, got {_describe(planned)}"))
    return out


def _match_steps(planned: list[tuple[str, dict]], wanted: list[Any], *, exact: bool) -> str | None:
    if exact and len(planned) != len(wanted):
        return f"expected exactly {len(wanted)} steps, got {len(planned)}: {_describe(planned)}"
    position = 0
    for item in wanted:
        action, params = (item, None) if isinstance(item, str) else next(iter(item.items()))
        while position < len(planned) and not _step_matches(planned[position], action, params):
            if exact:
                return f"expected step {_describe_one(action, params)} at {position + 1}, got {_describe(planned)}"
            position += 1
        if position == len(planned):
            return f"expected step {_describe_one(action, params)} (in this order), got {_describe(planned)}"
        position += 1
    return None


def _step_matches(step: tuple[str, dict], action: str, params: Any) -> bool:
    name, actual = step
    if name != action:
        return False
    if params is None:
        return True
    if not isinstance(params, dict):
        # A scalar compares the action's main parameter (`trigger_flow: refund`).
        declared = ACTIONS.get(action)
        params = {(declared.main_param if declared else None) or action: params}
    for key, expected in params.items():
        value = actual.get(key)
        if isinstance(value, list) and not isinstance(expected, list):
            expected = [expected]
        if _normalise(value) != _normalise(expected):
            return False
    return True


def _normalise(value: Any) -> Any:
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)  # ids: YAML may read them as numbers
    return value


def _describe_one(action: str, params: Any) -> str:
    return action if params is None else f"{action} {json.dumps(params, ensure_ascii=False, default=str)}"


def _describe(planned: list[tuple[str, dict]]) -> str:
    if not planned:
        return "no steps"
    return "[" + ", ".join(name for name, _ in planned) + "]"


# --- files ------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _validator():
    from jsonschema import Draft202012Validator

    return Draft202012Validator(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))


def _schema_problems(data: Any, display: str) -> list[Problem]:
    from jsonschema.exceptions import best_match

    problems = []
    for error in _validator().iter_errors(data):
        error = best_match([error])
        location = ".".join(str(p) for p in error.absolute_path) or "the file"
        problems.append(Problem(display, line_of(data, list(error.absolute_path)), f"{location}: {error.message}"))
    return sorted(set(problems), key=lambda p: (p.line, p.message))


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    parsed = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
