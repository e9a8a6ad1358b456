"""Turn a stored or given event body into what the planner decides on.

Two kinds exist: a payment platform's webhook body (engine.sources), and the engine's own internal events
(``{"event": "GRACE_EXPIRED", "product": "comunidade", "email": ..., "fields": {...}}``)
raised by the bot, timers and admins.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from engine.rules.model import Product, Rules
from engine.sources import SOURCES, Source, detect, is_platform

if TYPE_CHECKING:
    from engine.lifecycle.planner import Plan


@dataclass
class EventInput:
    source: str  # a platform's name (engine.sources.SOURCES) | "internal"
    event_type: str | None
    fields: dict[str, Any]
    product: Product | None
    email: str | None
    occurred_at: datetime | None = None
    problems: list[str] = field(default_factory=list)
    product_key: str | None = None  # internal events name the product directly
    # A new student's plan, decided when admitting the event (it creates the student only if a
    # rule acts); planning reuses it unless the student changed meanwhile. Planned once.
    lead_plan: Plan | None = None
    # A platform's event with no canonical meaning: stored, and ignored with this reason.
    ignored_reason: str | None = None


def is_internal(body: Any) -> bool:
    return isinstance(body, dict) and "event" in body and "data" not in body and "version" not in body


def from_source(source: Source, body: Any, rules: Rules) -> EventInput:
    """A platform's webhook, read into the canonical event; its own name and source kept as fields."""
    parsed = source.parse(body)
    fields = {**parsed.fields(), "source": source.name, "source_event": parsed.source_event}
    return EventInput(
        source=source.name,
        event_type=parsed.event_type,
        fields=fields,
        product=rules.product_for(source.name, parsed.product_id, parsed.offer_code),
        email=parsed.email,
        occurred_at=parsed.creation_date,
        problems=list(parsed.problems),
        ignored_reason=parsed.ignored,
    )


def from_internal(body: dict[str, Any], rules: Rules) -> EventInput:
    problems = []
    raw_fields = body.get("fields") or {}
    if not isinstance(raw_fields, dict):  # dict() of a list or string raised
        problems.append("fields: expected an object")
        raw_fields = {}
    fields = dict(raw_fields)
    key = body.get("product")
    fields.setdefault("event_type", body.get("event"))
    email = body.get("email")
    if email is not None and not isinstance(email, str):  # .strip() of a number raised
        problems.append("email: expected a string")
        email = None
    product = rules.products.get(key) if isinstance(key, str) else None
    if key is not None and product is None:
        problems.append(f"product {key!r} is not defined in the rules")
    return EventInput(
        source="internal",
        event_type=str(body.get("event")) if body.get("event") else None,
        fields=fields,
        product=product,
        email=(email or "").strip().lower() or None,
        problems=problems,
        product_key=key if isinstance(key, str) else None,
    )


def event_input(body: Any, rules: Rules, *, source: str | None = None) -> EventInput:
    """``source``: the stored event's; a platform's webhook is always read as that platform's,
    whatever its shape (a body posing as an internal event must not link accounts or fire
    timers). Without one (a payload given to ``engine dry-run``) the body's shape decides."""
    if is_platform(source):
        return from_source(SOURCES[source], body, rules)
    return from_internal(body, rules) if is_internal(body) else from_source(detect(body), body, rules)
