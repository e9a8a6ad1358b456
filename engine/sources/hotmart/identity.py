"""Which event a Hotmart body is: its envelope, read without a full parse, its dedupe key and
the change it makes.

The webhook stores these few fields in columns on the hot path; a redelivery of the same
event shares the dedupe key, so it is stored once. The same change brought twice (a webhook and
``engine sync hotmart``'s reading of the API, or two webhooks of other envelope ids) shares the
change key, so it is applied once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from engine.sources import base
from engine.sources.reader import Reader, first

# The changes a purchase's transaction goes through that the API shows too (its sales history
# status), keyed by transaction + event: each happens once to a transaction (a renewal is a new
# transaction). A cancellation is keyed by subscriber code + the last day of access (a subscription
# reactivated and cancelled again ends on another day).
PURCHASE_CHANGES = frozenset(
    {
        "PURCHASE_APPROVED",
        "PURCHASE_REFUNDED",
        "PURCHASE_CHARGEBACK",
        "PURCHASE_PROTEST",
        "PURCHASE_CANCELED",
        "PURCHASE_DELAYED",
    }
)
CANCELLATION = "SUBSCRIPTION_CANCELLATION"
_CHANGE_KEY_LENGTH = 100  # events.change_key


@dataclass(frozen=True)
class Envelope:
    """The few fields the webhook stores in columns, read without a full parse (hot path)."""

    id: str | None
    event_type: str | None
    creation_date: datetime | None
    email: str | None
    transaction: str | None


def envelope(body: object) -> Envelope:
    """Read the envelope fields of a decoded body (any JSON value). Never raises."""
    r = Reader(body)
    return Envelope(r.text("id"), event_type(r), creation_date(r), buyer_email(r), r.code("data.purchase.transaction"))


def dedupe_key(raw_body: bytes, event: base.Envelope) -> str:
    """'hotmart:<envelope id>' (§3: the id is unique per event), else a hash of the body.

    ``event``: an :class:`Envelope` or a parsed :class:`~engine.sources.hotmart.event.HotmartEvent`.
    """
    if isinstance(event.id, str) and event.id:
        return f"hotmart:{event.id}"
    return "sha256:" + hashlib.sha256(raw_body).hexdigest()


def change_key(body: object) -> str | None:
    """'hotmart:<transaction>:<event>:<buyer>' for a purchase's change, 'hotmart:<subscriber code>:
    SUBSCRIPTION_CANCELLATION:<last day of access>:<buyer>' for a cancellation; None for any other
    event (or one missing what its key needs). The buyer's e-mail changes nothing for Hotmart's own
    codes (one buyer each) and keeps two buyers' bodies that share a code (copies of one sample)
    apart. Never raises."""
    r = Reader(body)
    name = event_type(r)
    buyer = buyer_email(r) or ""
    if name in PURCHASE_CHANGES:
        transaction = r.code("data.purchase.transaction")
        return _bounded(f"hotmart:{transaction}:{name}:{buyer}") if transaction else None
    if name == CANCELLATION:
        code = first(r.code("data.subscriber.code"), r.code("data.subscription.subscriber.code"))
        ends = r.when("data.date_next_charge")
        return _bounded(f"hotmart:{code}:{name}:{ends:%Y-%m-%d}:{buyer}") if code and ends else None
    return None


def _bounded(key: str) -> str:
    if len(key) <= _CHANGE_KEY_LENGTH:
        return key
    return "hotmart:sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def event_type(r: Reader) -> str | None:
    value = r.text("event")
    return value.upper() if value else None


def creation_date(r: Reader) -> datetime | None:
    # §3: CLUB_FIRST_ACCESS spells it creationDate.
    return first(r.when("creation_date"), r.when("creationDate"))


def buyer_email(r: Reader) -> str | None:
    return first(
        r.email("data.buyer.email"),
        r.email("data.subscriber.email"),
        r.email("data.user.email"),
        r.email("data.subscription.user.email"),
    )
