"""Build the rules model (:class:`Rules`) from validated documents, checking each element.

:mod:`engine.rules.loader` reads and validates the files and hands the documents over by
kind; this builds products, conditions, transitions and onboarding, reporting what a single
element gets wrong (an unknown state, a tag missing from the catalogue, a step's argument)
at its line, then runs :mod:`engine.rules.crosschecks` on the whole.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from engine.rules import crosschecks, messages
from engine.rules.action_types import CheckContext
from engine.rules.actions import ACTIONS
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
    parse_duration,
)
from engine.rules.source import Problem, line_of
from engine.rules.unmanaged import read_unmanaged
from engine.sources import DEFAULT_SOURCE, SOURCES


class RulesBuilder:
    """Builds :class:`Rules` from the validated documents, collecting every problem on the way."""

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
        unmanaged = read_unmanaged(*catalog_doc, products, self.error) if catalog_doc else {}
        if lifecycle_doc is None or onboarding_doc is None:
            return None
        self.products = products
        file, data = lifecycle_doc
        lifecycle = data["lifecycle"]
        self.lifecycle_file = file
        self.states = tuple(lifecycle["states"])
        self.internal_events = dict(lifecycle.get("events", {}))
        from engine.sources import SOURCE_EVENTS

        self.source_events = SOURCE_EVENTS  # the canonical vocabulary every platform maps onto
        clash = sorted(set(self.internal_events) & self.source_events)
        for name in clash:
            self.error(
                file,
                line_of(data, ["lifecycle", "events", name]),
                f"event {name} is Hotmart's; declare only internal events",
            )
        self.known_events = self.source_events | frozenset(self.internal_events)
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
        # Platform events a misspelt event name was probably meant to be, and states a misspelt
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
        self.problems += crosschecks.duplicate_names(transitions)
        self.problems += crosschecks.missing_flows(transitions, products, self.product_docs, file)
        if not self.bad_destination:
            self.problems += crosschecks.unreachable_states(transitions, initial, self.states, file, data)
        sure = [rule for index, rule in enumerate(transitions) if index not in self.unsure]
        self.problems += crosschecks.overlapping_transitions(sure, self.states)
        unhandled = self.source_events - self.meant_events  # a misspelt event was meant to handle these
        self.problems += crosschecks.events_without_outcome(transitions, ignore, unhandled, file, data)
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
            deprecations=tuple(self.deprecations),
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
        self.deprecations: list[str] = []
        claims: dict[tuple[str, str], list[Product]] = defaultdict(list)
        for file, data in self.documents.get("product", []):
            spec = data["product"]
            access = spec.get("access", {})
            ids, where = self._source_ids(file, data)
            product = Product(
                key=spec["key"],
                name=spec["name"],
                kind=spec.get("kind", "one_time"),
                source_ids=ids,
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
            for source_name, source_ids in product.source_ids.items():
                title = SOURCES[source_name].title
                offers_apply = source_name == DEFAULT_SOURCE.name  # offer codes are Hotmart's
                for id_index, product_id in enumerate(source_ids):
                    for other in claims[source_name, product_id]:
                        if not offers_apply or _offers_overlap(product.offer_codes, other.offer_codes):
                            self.error(
                                file,
                                line_of(data, [*where[source_name], id_index]),
                                f"{title} product {product_id} is already claimed by product {other.key!r} "
                                f"({other.file})",
                            )
                    claims[source_name, product_id].append(product)
        return products

    def _source_ids(self, file: str, data: Any) -> tuple[dict[str, tuple[str, ...]], dict[str, list]]:
        """A product's ids per source (``sources: {hotmart: [...], kiwify: [...]}``, or a source's
        older key such as ``hotmart_product_ids``, noted as deprecated), and where each list is."""
        spec = data["product"]
        ids: dict[str, tuple[str, ...]] = {}
        where: dict[str, list] = {}
        for name, listed in (spec.get("sources") or {}).items():
            ids[name] = tuple(str(i) for i in listed)
            where[name] = ["product", "sources", name]
        for source in SOURCES.values():
            legacy = getattr(source, "legacy_product_ids_key", None)
            if legacy is None or legacy not in spec:
                continue
            line = line_of(data, ["product", legacy])
            if source.name in ids:
                self.error(file, line, f"{legacy} and sources.{source.name} both list ids: keep sources.{source.name}")
                continue
            ids[source.name] = tuple(str(i) for i in spec[legacy])
            where[source.name] = ["product", legacy]
            listed = ", ".join(ids[source.name])
            self.deprecations.append(
                f"{file}:{line}: {legacy} is deprecated: write sources: {{{source.name}: [{listed}]}}"
            )
        if not any(ids.values()):
            examples = ", ".join(f"{s.name}: [{s.product_id_example}]" for s in SOURCES.values())
            self.error(
                file,
                line_of(data, ["product"]),
                f"product {spec.get('key')!r} claims no product id: add sources: {{{examples}}}",
            )
        return ids, where

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
