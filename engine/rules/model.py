"""The rules as typed, immutable objects (built by :mod:`engine.rules.builder`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from engine.sources.base import CANONICAL_FIELDS

# The actions a step may name are declared in engine.rules.actions.

# Predicates the engine computes from the student's facts and the event.
BUILTIN_PREDICATES: dict[str, str] = {
    "discord_linked": "the student has a Discord account linked",
    "discord_account_changed": "DISCORD_LINKED brings a different account than the one linked before",
    "date_next_charge_passed": "the event's date_next_charge is missing or already past",
    "same_transaction": "the event's transaction is the membership's own (the last one applied to it); "
    "true when either is unknown",
    "is_test_event": "a Hotmart 'send test' payload (product id 0)",
}

# Event fields a comparison or a template may read (every source fills them, see engine.sources):
# ``source`` is the platform (hotmart, kiwify, eduzz), ``source_event`` its own name for the event.
EVENT_FIELDS: frozenset[str] = frozenset({*CANONICAL_FIELDS, "source", "source_event"})

TEMPLATE_VARIABLES: frozenset[str] = frozenset(
    {"token", "product.key", "product.name", "student.email", "student.name"}
    | {f"event.{name}" for name in EVENT_FIELDS}
)
TEMPLATE_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)\}")

COMPARISONS = ("equals", "not_equals", "in", "not_in", "gt", "gte", "lt", "lte", "exists")
PRODUCT_KINDS = ("one_time", "subscription")
NO_FLOW = "none"  # `flows: {billet_reminder: none}`: the product sends no such flow

_DURATION_RE = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str) -> timedelta:
    match = _DURATION_RE.match(text)
    if not match:
        raise ValueError(f"invalid duration {text!r} (use e.g. 30s, 10m, 24h, 7d)")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def as_list(value: Any) -> list:
    """A YAML value that may be one item or a list of them, as a list."""
    return list(value) if isinstance(value, list) else [value]


def as_datetime(value: Any) -> datetime | None:
    """An event's date (ISO 8601 text or a datetime) as an aware datetime; None if missing or unreadable."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


@dataclass(frozen=True)
class Condition:
    """A condition tree: a named predicate, a field comparison, or all/any/not."""

    kind: str  # "predicate" | "compare" | "all" | "any" | "not"
    name: str = ""  # predicate name, or compared field
    op: str = ""
    value: Any = None
    children: tuple[Condition, ...] = ()

    def describe(self) -> str:
        if self.kind == "predicate":
            return self.name
        if self.kind == "compare":
            return f"{self.name} {self.op} {self.value!r}"
        if self.kind == "not":
            return f"not {self.children[0].describe()}"
        joiner = " and " if self.kind == "all" else " or "
        return "(" + joiner.join(child.describe() for child in self.children) + ")"


@dataclass(frozen=True)
class StepSpec:
    action: str
    args: Any  # None for a bare action; otherwise the YAML value
    line: int


def flow_name(args: Any) -> str:
    """The flow a trigger_flow step names (``trigger_flow: x`` or ``{flow: x, optional: true}``)."""
    return args if isinstance(args, str) else args["flow"]


def is_optional(step: StepSpec) -> bool:
    """A step marked ``optional: true``: a product without its flow skips it."""
    return isinstance(step.args, dict) and bool(step.args.get("optional"))


@dataclass(frozen=True)
class TransitionRule:
    name: str
    events: tuple[str, ...]
    sources: tuple[str, ...]  # ("*",) means any state
    dest: str | None  # None: stay in the same state
    kinds: tuple[str, ...] | None
    if_: Condition | None
    unless: Condition | None
    steps: tuple[StepSpec, ...]
    file: str
    line: int

    def applies_to_kind(self, kind: str) -> bool:
        return self.kinds is None or kind in self.kinds


@dataclass(frozen=True)
class Product:
    key: str
    name: str
    kind: str
    source_ids: dict[str, tuple[str, ...]]  # source name -> the product ids it claims there
    offer_codes: tuple[str, ...]
    discord_roles: tuple[str, ...]
    manychat_tags: tuple[str, ...]
    classes: tuple[str, ...]
    flows: dict[str, str]  # logical name -> ManyChat flow_ns
    file: str
    line: int
    no_flows: frozenset[str] = frozenset()  # flows listed as `none`: this product sends none


@dataclass(frozen=True)
class Onboarding:
    code_valid_for: timedelta
    max_failed_attempts: int
    failed_attempts_window: timedelta
    replies: dict[str, str]


@dataclass(frozen=True)
class Rules:
    initial: str
    states: tuple[str, ...]
    internal_events: dict[str, str]
    student_events: frozenset[str]  # internal events every membership of the student gets
    predicates: dict[str, Condition]
    transitions: tuple[TransitionRule, ...]
    ignore: dict[str, str]
    products: dict[str, Product]
    manychat_tags: frozenset[str]
    manychat_fields: frozenset[str]
    create_missing_subscribers: bool
    classes: dict[str, str]
    onboarding: Onboarding
    files: tuple[str, ...] = field(default=())
    # Product ids sold outside the engine, per source name (catalog.unmanaged_products, read by
    # engine.rules.unmanaged): their events are plainly ignored.
    unmanaged_products: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # Declared renames (old state -> new state), applied to the database when first loaded.
    renamed_states: dict[str, str] = field(default_factory=dict)
    # Where a part of the rules is declared, as (file, line), for messages about the database:
    # "lifecycle.states", "lifecycle.events", "lifecycle.renamed_states".
    locations: dict[str, tuple[str, int]] = field(default_factory=dict)
    # What still works but is on its way out, as "file:line: what to write instead" (engine check notes them).
    deprecations: tuple[str, ...] = ()

    def product_for(self, source: str, product_id: str | None, offer_code: str | None = None) -> Product | None:
        """The product a source's product id (and offer) belongs to, or None."""
        if not product_id:
            return None
        from engine.sources import DEFAULT_SOURCE

        offers_apply = source == DEFAULT_SOURCE.name  # offer codes are Hotmart's
        for product in self.products.values():
            if product_id in product.source_ids.get(source, ()) and (
                not offers_apply or not product.offer_codes or offer_code in product.offer_codes
            ):
                return product
        return None

    @property
    def known_events(self) -> frozenset[str]:
        from engine.sources import SOURCE_EVENTS

        return SOURCE_EVENTS | frozenset(self.internal_events)
