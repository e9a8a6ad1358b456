"""What the engine needs from a payment platform (a *source*) whose webhooks it reads.

Hotmart is the one source today (:mod:`engine.sources.hotmart`); a second platform
(Kiwify, Eduzz ...) implements :class:`Source` in its own module and is listed in
:data:`engine.sources.SOURCES`. A source only reads: it never calls the platform.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol


class Envelope(Protocol):
    """The few fields the webhook stores in columns, read without a full parse (hot path)."""

    id: str | None
    event_type: str | None
    creation_date: datetime | None
    email: str | None
    transaction: str | None


class SourceEvent(Protocol):
    """A fully parsed body: what the rules decide on. Unusable values are ``None`` plus a problem."""

    event_type: str | None
    creation_date: datetime | None
    product_id: str | None
    offer_code: str | None
    email: str | None
    problems: tuple[str, ...]

    def fields(self) -> dict[str, object]:
        """The flat fields conditions and templates read (``engine.rules.model.EVENT_FIELDS``)."""
        ...


class Source(Protocol):
    name: str  # the event log's ``source`` column
    events: frozenset[str]  # every event type the platform sends; the rules may name these
    # The platform's semantics the engine relies on, whatever the rules say:
    granting_events: frozenset[str]  # would grant (or restore) access for a purchase
    revoking_events: frozenset[str]  # end a purchase for good: its transaction never grants again
    paid_until_events: frozenset[str]  # their date_next_charge is the date the payment covers

    def envelope(self, body: object) -> Envelope:
        """Read the envelope of any decoded JSON value; never raises."""
        ...

    def parse(self, body: object) -> SourceEvent:
        """Parse any decoded JSON value; never raises."""
        ...

    def dedupe_key(self, raw_body: bytes, event: Envelope) -> str:
        """The key a redelivery of the same event shares."""
        ...

    def verify(self, header_value: str | None, body: object, expected: str) -> bool:
        """Whether the request carries the shared secret."""
        ...
