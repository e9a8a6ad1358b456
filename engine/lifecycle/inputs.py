"""Turn a stored or given event body into what the planner decides on.

Two shapes exist: a Hotmart v2 webhook body, and the engine's own internal events
(``{"event": "GRACE_EXPIRED", "product": "comunidade", "email": ..., "fields": {...}}``)
raised by the bot, timers and admins.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from engine.rules.model import Product, Rules

if TYPE_CHECKING:
    from engine.lifecycle.planner import Plan
from engine.sources import hotmart


@dataclass
class EventInput:
    source: str  # "hotmart" | "internal"
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


def is_internal(body: Any) -> bool:
    return isinstance(body, dict) and "event" in body and "data" not in body and "version" not in body


def from_hotmart(body: Any, rules: Rules) -> EventInput:
    parsed = hotmart.SOURCE.parse(body)
    fields = parsed.fields()
    return EventInput(
        source=hotmart.SOURCE.name,
        event_type=parsed.event_type,
        fields=fields,
        product=rules.product_for(parsed.product_id, parsed.offer_code),
        email=parsed.email,
        occurred_at=parsed.creation_date,
        problems=list(parsed.problems),
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
    """``source``: the stored event's; a Hotmart webhook is always read as Hotmart, whatever its
    shape (a body posing as an internal event must not link accounts or fire timers)."""
    if source == "hotmart":
        return from_hotmart(body, rules)
    return from_internal(body, rules) if is_internal(body) else from_hotmart(body, rules)
