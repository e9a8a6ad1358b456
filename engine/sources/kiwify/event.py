"""A Kiwify webhook body read into the canonical event (:class:`KiwifyEvent`), and its identity.

Kiwify sends a flat JSON object (README.md in this package). Like Hotmart's parser, this one
reads a fixed set of paths with :class:`~engine.sources.reader.Reader` and never raises.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from engine.sources.base import canonical_fields
from engine.sources.kiwify.events import ABANDONED_CART, CANONICAL
from engine.sources.phone import normalize_phone
from engine.sources.reader import Reader, first


@dataclass(frozen=True)
class KiwifyEnvelope:
    id: str | None  # order_id
    event_type: str | None  # canonical (or Kiwify's own name when it has none)
    source_event: str | None
    creation_date: datetime | None
    email: str | None
    transaction: str | None
    subscription_id: str | None
    paid_until: datetime | None


@dataclass(frozen=True)
class KiwifyEvent:
    id: str | None
    event_type: str | None
    source_event: str | None
    creation_date: datetime | None
    product_id: str | None
    product_name: str | None
    email: str | None
    name: str | None
    phone: str | None
    transaction: str | None
    subscriber_code: str | None
    date_next_charge: datetime | None
    purchase_status: str | None
    payment_type: str | None
    plan_id: str | None
    plan_name: str | None
    problems: tuple[str, ...]
    offer_code: str | None = None  # Kiwify has no offer codes
    ignored: str | None = None  # every Kiwify event in the table has a canonical meaning

    def fields(self) -> dict[str, object]:
        """Flat dict the rules engine matches on (datetimes as ISO 8601 strings in UTC)."""
        return canonical_fields(self)


def source_event(r: Reader) -> str | None:
    named = r.text("webhook_event_type")
    if named:
        return named.lower()
    return ABANDONED_CART if (r.text("status") or "").lower() == "abandoned" else None


def canonical(name: str | None) -> str | None:
    return CANONICAL.get(name, name) if name else None


def _creation_date(r: Reader) -> datetime | None:
    # The latest change of the order: a refund's updated_at follows its approval's.
    return first(r.when("updated_at"), r.when("approved_date"), r.when("created_at"))


def _email(r: Reader) -> str | None:
    return first(r.email("Customer.email"), r.email("email"))  # an abandoned cart's is at the root


def _subscription(r: Reader) -> str | None:
    return first(r.code("subscription_id"), r.code("Subscription.id"))


def _paid_until(r: Reader) -> datetime | None:
    return first(r.when("Subscription.customer_access.access_until"), r.when("Subscription.next_payment"))


def envelope(body: object) -> KiwifyEnvelope:
    r = Reader(body)
    name = source_event(r)
    return KiwifyEnvelope(
        id=r.code("order_id"),
        event_type=canonical(name),
        source_event=name,
        creation_date=_creation_date(r),
        email=_email(r),
        transaction=r.code("order_id"),
        subscription_id=_subscription(r),
        paid_until=_paid_until(r),
    )


def parse(body: object) -> KiwifyEvent:
    """Parse a decoded Kiwify body (any JSON value). Never raises."""
    r = Reader(body)
    if not isinstance(body, dict):
        r.problems.append("body: expected a JSON object")
    name = source_event(r)
    return KiwifyEvent(
        id=r.code("order_id"),
        event_type=canonical(name),
        source_event=name,
        creation_date=_creation_date(r),
        product_id=first(r.code("Product.product_id"), r.code("product_id")),
        product_name=first(r.text("Product.product_name"), r.text("product_name")),
        email=_email(r),
        name=first(r.name("Customer.full_name"), r.name("name")),
        phone=normalize_phone(first(r.text("Customer.mobile"), r.text("phone"))),
        transaction=r.code("order_id"),
        subscriber_code=_subscription(r),
        date_next_charge=_paid_until(r),
        purchase_status=r.text("order_status"),
        payment_type=r.text("payment_method"),
        plan_id=r.code("Subscription.plan.id"),
        plan_name=r.text("Subscription.plan.name"),
        problems=tuple(r.problems),
    )


def dedupe_key(raw_body: bytes, event: KiwifyEnvelope) -> str:
    """No stable event id is documented: the order and the event type (a subscription's event also
    its subscription and paid-until date: each failed retry of a charge is a new event); else a
    hash of the body (an abandoned cart)."""
    if event.id and event.source_event:
        key = f"kiwify:{event.id}:{event.source_event}"
        if event.subscription_id and event.source_event.startswith("subscription_"):
            paid_until = event.paid_until.isoformat() if event.paid_until else ""
            key = f"kiwify:{event.subscription_id}:{event.id}:{event.source_event}:{paid_until}"
        return key
    return "kiwify:sha256:" + hashlib.sha256(raw_body).hexdigest()
