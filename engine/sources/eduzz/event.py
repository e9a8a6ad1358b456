"""An Eduzz Developer Hub body read into the canonical event (:class:`EduzzEvent`), its identity,
and one body per product of an invoice. Never raises (:class:`~engine.sources.reader.Reader`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from engine.sources.base import canonical_fields
from engine.sources.eduzz.events import CANONICAL, CONTRACT_PREFIX, CONTRACT_STATUS, MEANINGLESS
from engine.sources.phone import normalize_phone
from engine.sources.reader import Reader, first


@dataclass(frozen=True)
class EduzzEnvelope:
    id: str | None
    event_type: str | None
    source_event: str | None
    creation_date: datetime | None
    email: str | None
    transaction: str | None
    product_id: str | None


@dataclass(frozen=True)
class EduzzEvent:
    id: str | None
    event_type: str | None
    source_event: str | None
    ignored: str | None  # why the engine ignores it: an Eduzz event with no canonical meaning
    creation_date: datetime | None
    product_id: str | None
    email: str | None
    name: str | None
    phone: str | None
    transaction: str | None
    subscriber_code: str | None
    purchase_status: str | None
    payment_type: str | None
    problems: tuple[str, ...]
    offer_code: str | None = None

    def fields(self) -> dict[str, object]:
        """Flat dict the rules engine matches on (datetimes as ISO 8601 strings in UTC)."""
        return canonical_fields(self)


def meaning(r: Reader) -> tuple[str | None, str | None, str | None]:
    """(canonical name, Eduzz's name, why it is ignored)."""
    name = r.text("event")
    if not name:
        return None, None, None
    if name.startswith(CONTRACT_PREFIX):
        status = r.text("data.contract.status")
        canonical = CONTRACT_STATUS.get(status or "")
        if canonical:
            return canonical, name, None
        return name, name, f"Eduzz contract {status or 'without a status'}: access follows the invoice events"
    if name in MEANINGLESS:
        return name, name, MEANINGLESS[name]
    return CANONICAL.get(name, name), name, None


def _product(r: Reader) -> str | None:
    return first(r.code("data.items.0.productId"), r.code("data.contract.productId"), r.code("data.product.id"))


def _email(r: Reader) -> str | None:
    return first(r.email("data.buyer.email"), r.email("data.customer.email"))


def _creation_date(r: Reader) -> datetime | None:
    return first(r.when("data.updatedAt"), r.when("sentDate"), r.when("data.createdAt"))


def envelope(body: object) -> EduzzEnvelope:
    r = _reader(body)
    canonical, name, _ = meaning(r)
    return EduzzEnvelope(
        id=r.code("id"),
        event_type=canonical,
        source_event=name,
        creation_date=_creation_date(r),
        email=_email(r),
        transaction=r.code("data.id"),
        product_id=_product(r),
    )


def parse(body: object) -> EduzzEvent:
    """Parse a decoded Eduzz body (any JSON value): its first item's product. Never raises."""
    r = _reader(body)
    if not isinstance(body, dict):
        r.problems.append("body: expected a JSON object")
    canonical, name, ignored = meaning(r)
    return EduzzEvent(
        id=r.code("id"),
        event_type=canonical,
        source_event=name,
        ignored=ignored,
        creation_date=_creation_date(r),
        product_id=_product(r),
        email=_email(r),
        name=first(r.name("data.buyer.name"), r.name("data.customer.name")),
        phone=normalize_phone(
            first(r.text("data.buyer.cellphone"), r.text("data.buyer.phone"), r.text("data.customer.cellphone"))
        ),
        transaction=r.code("data.id"),
        subscriber_code=r.code("data.contract.id"),
        purchase_status=first(r.text("data.status"), r.text("data.contract.status")),
        payment_type=r.text("data.paymentMethod"),
        problems=tuple(r.problems),
    )


def split(payload: object) -> list[object]:
    """One body per item of an invoice (each product its own membership); others as they are."""
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
        return [payload]
    items = payload["data"].get("items")
    if not isinstance(items, list) or len(items) < 2:
        return [payload]
    return [{**payload, "data": {**payload["data"], "items": [item]}} for item in items]


def dedupe_key(raw_body: bytes, event: EduzzEnvelope) -> str:
    """The envelope id (and the item's product: an invoice of two is two events); else a hash."""
    if event.id:
        return f"eduzz:{event.id}:{event.product_id}" if event.product_id else f"eduzz:{event.id}"
    suffix = f":{event.product_id}" if event.product_id else ""
    return "eduzz:sha256:" + hashlib.sha256(raw_body).hexdigest() + suffix


class _ItemReader(Reader):
    """Reads ``data.items.0.x`` as the first entry of the ``data.items`` array."""

    def get(self, path: str) -> object:
        if ".items.0." not in path:
            return super().get(path)
        head, tail = path.split(".items.0.", 1)
        items = super().get(f"{head}.items")
        if not isinstance(items, list) or not items or not isinstance(items[0], dict):
            return None
        return Reader(items[0]).get(tail)


def _reader(body: object) -> Reader:
    return _ItemReader(body)
