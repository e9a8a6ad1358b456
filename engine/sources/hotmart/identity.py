"""Which event a Hotmart body is: its envelope, read without a full parse, and its dedupe key.

The webhook stores these few fields in columns on the hot path; a redelivery of the same
event shares the dedupe key, so it is stored once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from engine.sources import base
from engine.sources.reader import Reader, first


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
