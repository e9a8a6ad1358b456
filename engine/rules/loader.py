"""Load ``rules/*.yaml``: schema validation, then the semantic checks, then :class:`Rules`.

Every problem is reported as ``file:line: message``; loading never stops at the
first one, so an admin sees every mistake of a change in one ``engine check``.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from functools import lru_cache
from itertools import combinations
from pathlib import Path
from typing import Any

from engine.rules import messages
from engine.rules.action_types import CheckContext
from engine.rules.actions import ACTIONS, EXAMPLES
from engine.rules.files import RULE_TESTS_DIR, rule_files  # noqa: F401 - RULE_TESTS_DIR re-exported
from engine.rules.model import (
    BUILTIN_PREDICATES,
    COMPARISONS,
    EVENT_FIELDS,
    NO_FLOW,
    Condition,
    Onboarding,
    Product,
    Rules,
    StepSpec,
    TransitionRule,
    as_list,
    flow_name,
    is_optional,
    parse_duration,
)
from engine.rules.schema_messages import SchemaMessage, narrow, schema_messages
from engine.rules.source import Problem, line_of, load_yaml

# engine/config.schema.json links to the top-level file, so an installed package carries it too.
SCHEMA_PATH = Path(__file__).resolve().parents[1] / "config.schema.json"
FILE_KINDS = ("lifecycle", "product", "catalog", "onboarding")
_KIND_LINE = re.compile(rf"^({'|'.join(FILE_KINDS)})\s*:", re.MULTILINE)


class RulesError(Exception):
    """The rules are invalid; ``problems`` lists every error found."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@lru_cache(maxsize=1)
def _validator():
    from jsonschema import Draft202012Validator

    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return Draft202012Validator(schema)


def load_rules(rules_dir: Path | str) -> Rules:
    """Load and check a rules directory; raises :class:`RulesError` listing every problem."""
    rules, problems = check_rules(rules_dir)
    if problems or rules is None:
        raise RulesError(problems)
    return rules


def check_rules(rules_dir: Path | str) -> tuple[Rules | None, list[Problem]]:
    rules_dir = Path(rules_dir)
    display_root = rules_dir.name or str(rules_dir)
    if not rules_dir.is_dir():
        return None, [Problem(str(rules_dir), 1, "rules directory not found")]
    paths = rule_files(rules_dir)  # the rule tests (rules/tests/) and other folders are not rules
    documents: dict[str, list[tuple[str, Any]]] = defaultdict(list)
    problems: list[Problem] = []
    # Kinds of the files that failed to parse or validate: they exist, so no "no <kind> file".
    broken: set[str] = set()
    for path in paths:
        display = f"{display_root}/{path.relative_to(rules_dir).as_posix()}"
        data, found = load_yaml(path, display)
        problems += found
        if data is None and not found:
            problems.append(Problem(display, 1, "empty file"))
            continue
        if data is None:
            broken.update(_KIND_LINE.findall(path.read_text(encoding="utf-8", errors="replace")))
            continue
        schema_problems = _schema_problems(data, display)
        problems += schema_problems
        if not schema_problems:
            kind = next(iter(data))
            documents[kind].append((display, data))
        elif isinstance(data, dict):
            broken.update(k for k in data if k in FILE_KINDS)
    builder = _Builder(display_root, documents, broken)
    rules = builder.build()
    problems += builder.problems
    # A step shared through a YAML anchor is checked once per transition: report it once.
    problems = sorted(set(problems), key=lambda p: (p.file, p.line, p.message))
    return (None if problems else rules), problems


# --- schema ------------------------------------------------------------------------------


def _schema_problems(data: Any, display: str) -> list[Problem]:
    found: list[SchemaMessage] = []
    for error in _validator().iter_errors(data):
        found += schema_messages(narrow(error), EXAMPLES)
    # A misspelt key (`form:`) is one mistake: say "unknown key", not also "missing 'from'".
    covered = {m.covers for m in found if m.covers is not None}
    problems = [Problem(display, line_of(data, m.path), m.text) for m in found if m.missing not in covered]
    # One mistake can break several branches: keep one message per line.
    return list(dict.fromkeys(problems))


# --- building and semantic checks ----------------------------------------------------------


class _Builder:
    def __init__(self, root: str, documents: dict[str, list[tuple[str, Any]]], broken: set[str] | None = None):
        self.root = root
        self.documents = documents
        self.broken = broken or set()
        self.problems: list[Problem] = []

    def error(self, file: str, line: int, message: str) -> None:
        self.problems.append(Problem(file, line, message))

    def _single(self, kind: str, required: bool) -> tuple[str, Any] | None:
        docs = self.documents.get(kind, [])
        if not docs:
            if required and kind not in self.broken:
                self.error(f"{self.root}/", 1, f"no {kind} file (a file whose top-level key is '{kind}:')")
            return None
        for file, data in docs[1:]:
            self.error(file, data.line, f"a second {kind} file; the first is {docs[0][0]}")
        return docs[0]

    def build(self) -> Rules | None:
        lifecycle_doc = self._single("lifecycle", required=True)
        onboarding_doc = self._single("onboarding", required=True)
        catalog_doc = self._single("catalog", required=False)
        catalog = catalog_doc[1]["catalog"] if catalog_doc else {}
        manychat = catalog.get("manychat", {})
        self.catalog_file = catalog_doc[0] if catalog_doc else f"{self.root}/"
        self.tags = frozenset(manychat.get("tags", []))
        self.fields = frozenset(manychat.get("fields", []))
        self.classes = dict(catalog.get("classes", {}))
        products = self._products()
        unmanaged = self._unmanaged(catalog_doc, products)
        if lifecycle_doc is None or onboarding_doc is None:
            return None
        self.products = products
        file, data = lifecycle_doc
        lifecycle = data["lifecycle"]
        self.lifecycle_file = file
        self.states = tuple(lifecycle["states"])
        self.internal_events = dict(lifecycle.get("events", {}))
        from engine.sources.hotmart import HOTMART_EVENTS

        self.hotmart_events = frozenset(HOTMART_EVENTS)
        clash = sorted(set(self.internal_events) & self.hotmart_events)
        for name in clash:
            self.error(
                file,
                line_of(data, ["lifecycle", "events", name]),
                f"event {name} is Hotmart's; declare only internal events",
            )
        self.known_events = self.hotmart_events | frozenset(self.internal_events)
        for index, name in enumerate(lifecycle.get("student_events", [])):
            if name not in self.internal_events:
                where = ["lifecycle", "student_events", index]
                self.error(file, line_of(data, where), f"student_events: {name} is not declared under lifecycle.events")
        renamed_states = self._renamed_states(lifecycle, data)
        initial = lifecycle["initial"]
        if initial not in self.states:
            self.error(
                file,
                line_of(data, ["lifecycle", "initial"]),
                messages.unknown("state", initial, self.states, where=" in initial"),
            )
        self.predicates: dict[str, Condition] = {}
        # Transitions whose conditions name something unknown: already reported, so their
        # overlaps with others are not reported again (one mistake, one error).
        self.unsure: set[int] = set()
        for name, spec in lifecycle.get("predicates", {}).items():
            where = ["lifecycle", "predicates", name]
            if name in BUILTIN_PREDICATES:
                self.error(file, line_of(data, where), f"predicate {name!r} is built in")
                continue
            self.predicates[name] = self._condition(spec, data, where, allow_named=False)
        # Hotmart events a misspelt event name was probably meant to be, and states a misspelt
        # `to` was: the knock-on "no outcome" / "unreachable" errors would repeat that mistake.
        self.meant_events: set[str] = set()
        self.bad_destination = False
        transitions = tuple(self._transition(index, spec, data) for index, spec in enumerate(lifecycle["transitions"]))
        ignore: dict[str, str] = {}
        for index, entry in enumerate(lifecycle.get("ignore", [])):
            for event in as_list(entry["on"]):
                where = ["lifecycle", "ignore", index, "on"]
                self._check_event(event, data, where)
                ignore.setdefault(event, entry["reason"])
        self._check_names(transitions)
        self._check_flows(transitions)
        if not self.bad_destination:
            self._check_reachable(transitions, initial, data)
        self._check_shadowing(transitions)
        self._check_outcomes(transitions, ignore, data)
        onboarding = self._onboarding(*onboarding_doc)
        return Rules(
            initial=initial,
            states=self.states,
            internal_events=self.internal_events,
            student_events=frozenset(lifecycle.get("student_events", [])),
            predicates=self.predicates,
            transitions=transitions,
            ignore=ignore,
            products=products,
            manychat_tags=self.tags,
            manychat_fields=self.fields,
            create_missing_subscribers=bool(manychat.get("create_missing_subscribers", False)),
            classes=self.classes,
            onboarding=onboarding,
            unmanaged_products=unmanaged,
            files=tuple(f for docs in self.documents.values() for f, _ in docs),
            renamed_states=renamed_states,
            locations={
                f"lifecycle.{key}": (file, line_of(data, ["lifecycle", key]))
                for key in ("states", "events", "renamed_states")
            },
        )

    def _renamed_states(self, lifecycle: Any, data: Any) -> dict[str, str]:
        """``renamed_states: {old: new}``: a rename is declared, never guessed from the data."""
        renamed = dict(lifecycle.get("renamed_states", {}))
        for old, new in renamed.items():
            line = line_of(data, ["lifecycle", "renamed_states", old])
            if old in self.states:
                self.error(
                    self.lifecycle_file,
                    line,
                    f"renamed_states: {old!r} is still a state; remove it from states, or drop the rename",
                )
            if new not in self.states:
                self.error(
                    self.lifecycle_file, line, messages.unknown("state", new, self.states, where=" in renamed_states")
                )
        return renamed

    # products ----------------------------------------------------------------------------

    def _products(self) -> dict[str, Product]:
        products: dict[str, Product] = {}
        self.product_docs: dict[str, Any] = {}
        claims: dict[str, list[Product]] = defaultdict(list)
        for file, data in self.documents.get("product", []):
            spec = data["product"]
            access = spec.get("access", {})
            product = Product(
                key=spec["key"],
                name=spec["name"],
                kind=spec.get("kind", "one_time"),
                hotmart_product_ids=tuple(str(i) for i in spec["hotmart_product_ids"]),
                offer_codes=tuple(spec.get("offer_codes", [])),
                discord_roles=tuple(access.get("discord_roles", [])),
                manychat_tags=tuple(access.get("manychat_tags", [])),
                classes=tuple(access.get("classes", [])),
                flows={name: ns for name, ns in spec.get("flows", {}).items() if ns != NO_FLOW},
                no_flows=frozenset(name for name, ns in spec.get("flows", {}).items() if ns == NO_FLOW),
                file=file,
                line=data.line,
            )
            if product.key in products:
                first = products[product.key]
                self.error(
                    file, line_of(data, ["product", "key"]), f"product key {product.key!r} already used in {first.file}"
                )
                continue
            products[product.key] = product
            self.product_docs[product.key] = data
            for tag_index, tag in enumerate(product.manychat_tags):
                if tag not in self.tags:
                    self.error(
                        file,
                        line_of(data, ["product", "access", "manychat_tags", tag_index]),
                        messages.not_in_catalog("tag", tag, "manychat.tags", self.tags),
                    )
            for class_index, key in enumerate(product.classes):
                if key not in self.classes:
                    self.error(
                        file,
                        line_of(data, ["product", "access", "classes", class_index]),
                        messages.not_in_catalog("class", key, "classes", self.classes),
                    )
            for id_index, hotmart_id in enumerate(product.hotmart_product_ids):
                for other in claims[hotmart_id]:
                    if _offers_overlap(product.offer_codes, other.offer_codes):
                        self.error(
                            file,
                            line_of(data, ["product", "hotmart_product_ids", id_index]),
                            f"Hotmart product {hotmart_id} is already claimed by product {other.key!r} ({other.file})",
                        )
                claims[hotmart_id].append(product)
        return products

    def _unmanaged(self, catalog_doc: tuple[str, Any] | None, products: dict[str, Product]) -> frozenset[str]:
        """Hotmart product ids the course sells outside the engine: their events are plainly ignored."""
        if catalog_doc is None:
            return frozenset()
        file, data = catalog_doc
        ids = data["catalog"].get("unmanaged_products", [])
        claimed = {hotmart_id: p for p in products.values() for hotmart_id in p.hotmart_product_ids}
        for index, hotmart_id in enumerate(ids):
            product = claimed.get(str(hotmart_id))
            if product is not None:
                self.error(
                    file,
                    line_of(data, ["catalog", "unmanaged_products", index]),
                    f"Hotmart product {hotmart_id} is listed as unmanaged but product {product.key!r} "
                    f"({product.file}) claims it",
                )
        return frozenset(str(i) for i in ids)

    # conditions --------------------------------------------------------------------------

    def _condition(self, spec: Any, data: Any, where: list, *, allow_named: bool = True) -> Condition:
        file = self.lifecycle_file
        if isinstance(spec, str):
            known = spec in BUILTIN_PREDICATES or (allow_named and spec in self.predicates)
            if not known:
                names = sorted(set(BUILTIN_PREDICATES) | set(self.predicates))
                self.error(file, line_of(data, where), messages.unknown("predicate", spec, names, known_as="known"))
                self._unsure(where)
            return Condition("predicate", name=spec)
        if isinstance(spec, list):
            return Condition(
                "all",
                children=tuple(
                    self._condition(item, data, [*where, i], allow_named=allow_named) for i, item in enumerate(spec)
                ),
            )
        if "all" in spec or "any" in spec:
            kind = "all" if "all" in spec else "any"
            return Condition(
                kind,
                children=tuple(
                    self._condition(item, data, [*where, kind, i], allow_named=allow_named)
                    for i, item in enumerate(spec[kind])
                ),
            )
        if "not" in spec:
            child = self._condition(spec["not"], data, [*where, "not"], allow_named=allow_named)
            return Condition("not", children=(child,))
        field_name = spec["field"]
        if field_name not in EVENT_FIELDS:
            self.error(
                file,
                line_of(data, [*where, "field"]),
                messages.unknown("event field", field_name, sorted(EVENT_FIELDS), known_as="known"),
            )
            self._unsure(where)
        op = next(k for k in spec if k in COMPARISONS)
        return Condition("compare", name=field_name, op=op, value=spec[op])

    def _unsure(self, where: list) -> None:
        if where[1] == "transitions":  # a condition of a transition (not of a named predicate)
            self.unsure.add(where[2])

    # transitions -------------------------------------------------------------------------

    def _transition(self, index: int, spec: Any, data: Any) -> TransitionRule:
        file = self.lifecycle_file
        where = ["lifecycle", "transitions", index]
        events = tuple(as_list(spec["on"]))
        for i, event in enumerate(events):
            self._check_event(event, data, [*where, "on", i] if isinstance(spec["on"], list) else [*where, "on"])
        sources = tuple(as_list(spec["from"]))
        for i, state in enumerate(sources):
            if state != "*" and state not in self.states:
                path = [*where, "from", i] if isinstance(spec["from"], list) else [*where, "from"]
                self.error(file, line_of(data, path), messages.unknown("state", state, self.states, where=" in from"))
        dest = spec.get("to")
        if dest is not None and dest not in self.states:
            self.bad_destination = True
            self.error(
                file, line_of(data, [*where, "to"]), messages.unknown("state", dest, self.states, where=" in to")
            )
        kinds = tuple(as_list(spec["kind"])) if "kind" in spec else None
        rule = TransitionRule(
            name=spec.get("name") or f"transition_{index + 1}",
            events=events,
            sources=sources,
            dest=dest,
            kinds=kinds,
            if_=self._condition(spec["if"], data, [*where, "if"]) if "if" in spec else None,
            unless=self._condition(spec["unless"], data, [*where, "unless"]) if "unless" in spec else None,
            steps=tuple(
                StepSpec(_action_of(step), _args_of(step), line_of(data, [*where, "do", i]))
                for i, step in enumerate(spec.get("do", []))
            ),
            file=file,
            line=line_of(data, where),
        )
        self._check_steps(rule)
        return rule

    def _check_event(self, event: str, data: Any, where: list) -> None:
        if event not in self.known_events:
            meant = messages.closest(event, self.known_events)
            if meant is not None:
                self.meant_events.add(meant)
            self.error(
                self.lifecycle_file, line_of(data, where), messages.unknown_event(event, sorted(self.known_events))
            )

    def _check_steps(self, rule: TransitionRule) -> None:
        context = CheckContext(
            tags=self.tags,
            fields=self.fields,
            classes=self.classes,
            internal_events=self.internal_events,
        )
        for step in rule.steps:
            for message in ACTIONS[step.action].check(step.args, context):
                self.error(self.lifecycle_file, step.line, message)

    def _check_flows(self, transitions: tuple[TransitionRule, ...]) -> None:
        """Each product defines (or declines with `none`) every flow its transitions send.

        A missing flow is fixed in the product file, so it is reported there, once per flow,
        naming the transitions that send it; a step marked `optional: true` needs nothing.
        """
        users: dict[str, list[tuple[TransitionRule, StepSpec]]] = defaultdict(list)
        for rule in transitions:
            for step in rule.steps:
                if step.action == "trigger_flow":
                    users[flow_name(step.args)].append((rule, step))
        declared = {name for p in self.products.values() for name in (*p.flows, *p.no_flows)}
        misspelt: set[str] = set()
        for flow, uses in users.items():
            match = messages.closest(flow, declared - set(users))
            if flow not in declared and match is not None:
                misspelt.add(flow)
                for step_line in sorted({step.line for _, step in uses}):
                    self.error(self.lifecycle_file, step_line, messages.flow_misspelled_in_step(flow, match))
        for product in self.products.values():
            data = self.product_docs[product.key]
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
                    self.error(product.file, line_of(data, where), messages.flow_misspelled_in_product(typo, flow))
                else:
                    names = list(dict.fromkeys(needed_by))
                    line = line_of(data, ["product", "flows"])
                    self.error(product.file, line, messages.flow_for_product(flow, names))

    def _check_names(self, transitions: tuple[TransitionRule, ...]) -> None:
        seen: dict[str, TransitionRule] = {}
        for rule in transitions:
            if rule.name in seen:
                self.error(
                    rule.file, rule.line, f"transition name {rule.name!r} already used at line {seen[rule.name].line}"
                )
            seen.setdefault(rule.name, rule)

    def _check_reachable(self, transitions: tuple[TransitionRule, ...], initial: str, data: Any) -> None:
        reached = {initial}
        for rule in transitions:
            if rule.dest:
                reached.add(rule.dest)
        for index, state in enumerate(self.states):
            if state not in reached:
                self.error(
                    self.lifecycle_file,
                    line_of(data, ["lifecycle", "states", index]),
                    f"state {state!r} is unreachable: no transition leads to it (add one with `to: {state}`, "
                    "or remove the state)",
                )

    def _check_shadowing(self, transitions: tuple[TransitionRule, ...]) -> None:
        pairs = combinations([t for i, t in enumerate(transitions) if i not in self.unsure], 2)
        for first, second in pairs:
            events = [e for e in first.events if e in second.events]
            if not events or not _kinds_overlap(first.kinds, second.kinds):
                continue
            states = _sources_overlap(first.sources, second.sources, self.states)
            if not states or _exclusive(first, second):
                continue
            self.error(
                second.file,
                second.line,
                f"transition {second.name!r} overlaps {first.name!r} (line {first.line}) on "
                f"{events[0]} from {states[0]!r}: both conditions can hold, so the first one always "
                "wins; make their conditions exclusive (if/unless the same predicate)",
            )

    def _check_outcomes(self, transitions: tuple[TransitionRule, ...], ignore: dict[str, str], data: Any) -> None:
        handled = {e for rule in transitions for e in rule.events} | set(ignore)
        # The fix goes under `ignore:` (or a new transition): point there.
        line = line_of(data, ["lifecycle", "ignore"] if "ignore" in data["lifecycle"] else ["lifecycle"])
        for event in sorted(self.hotmart_events - handled - self.meant_events):
            self.error(
                self.lifecycle_file,
                line,
                f"Hotmart event {event} has no transition and is not listed under ignore: give it a deliberate "
                "outcome (a transition, or an ignore entry with a reason)",
            )

    # onboarding --------------------------------------------------------------------------

    def _onboarding(self, file: str, data: Any) -> Onboarding:
        spec = data["onboarding"]
        attempts = spec.get("failed_attempts", {})
        return Onboarding(
            code_valid_for=parse_duration(spec.get("code_valid_for", "7d")),
            max_failed_attempts=int(attempts.get("max", 5)),
            failed_attempts_window=parse_duration(attempts.get("window", "10m")),
            replies=dict(spec["replies"]),
        )


# --- helpers -------------------------------------------------------------------------------


def _action_of(step: Any) -> str:
    return step if isinstance(step, str) else next(iter(step))


def _args_of(step: Any) -> Any:
    return None if isinstance(step, str) else step[next(iter(step))]


def _offers_overlap(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    return not a or not b or bool(set(a) & set(b))


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
