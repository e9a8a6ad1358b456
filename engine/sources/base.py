"""What the engine needs from a payment platform (a *source*) whose webhooks it reads.

Each platform implements :class:`Source` in its own package (``engine.sources.hotmart``,
``engine.sources.kiwify``, ``engine.sources.eduzz``) and is listed in :data:`engine.sources.SOURCES`.
Nothing outside ``engine/sources/`` names a platform: the route, the intake, the worker and the
rules go through this interface. A source only reads: it never calls the platform.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


class Envelope(Protocol):
    """The few fields the webhook stores in columns, read without a full parse (hot path).

    ``event_type`` is the canonical name (:mod:`engine.sources.canonical`) when the platform's
    event has one, else the platform's own name (stored, then ignored or needing attention).
    """

    id: str | None
    event_type: str | None
    creation_date: datetime | None
    email: str | None
    transaction: str | None


class SourceEvent(Protocol):
    """A fully parsed body: what the rules decide on. Unusable values are ``None`` plus a problem."""

    event_type: str | None  # canonical
    source_event: str | None  # the platform's own event name, for the log and for conditions
    ignored: str | None  # why the engine ignores it: a platform event with no canonical meaning
    creation_date: datetime | None
    product_id: str | None
    offer_code: str | None
    email: str | None
    problems: tuple[str, ...]

    def fields(self) -> dict[str, object]:
        """The flat fields conditions and templates read (``engine.rules.model.EVENT_FIELDS``)."""
        ...


class Source(Protocol):
    name: str  # the event log's ``source`` column, the route's /webhooks/{name}, the rules' sources: key
    title: str  # how people write it: "Hotmart"
    events: frozenset[str]  # every event name the platform sends (its own names)
    # Its own event names -> the canonical vocabulary the rules speak (engine.sources.canonical).
    canonical: Mapping[str, str]
    # Its own event names with no canonical meaning -> why the engine ignores them.
    meaningless: Mapping[str, str]
    # The platform's semantics the engine relies on, whatever the rules say (canonical names):
    granting_events: frozenset[str]  # would grant (or restore) access for a purchase
    revoking_events: frozenset[str]  # end a purchase for good: its transaction never grants again
    paid_until_events: frozenset[str]  # their date_next_charge is the date the payment covers
    # Settings (engine.settings.Settings attribute names): its shared secret and its on/off flag
    # (off: its webhooks are verified and stored as held, processed when it is turned on).
    secret_setting: str
    enabled_setting: str
    secret_headers: frozenset[str]  # request headers never stored (lower case)
    unauthorized: str  # the 401's detail: what was missing or wrong
    silence_hint: str  # what to check on the platform when its webhooks stop (engine.pipeline.silence)
    product_id_schema: dict[str, Any]  # JSON schema of one product id in a product's sources:
    product_id_example: str  # as written in a product's sources:, for messages
    product_id_hint: str  # what a product id looks like, for engine check's message on a wrong one

    def verify(
        self, raw_body: bytes, headers: Mapping[str, str], query: Mapping[str, str], secret: str, decoded: object
    ) -> bool:
        """Whether the request is the platform's, judged on the raw bytes (``decoded``: their JSON,
        or :data:`NOT_JSON`). An empty ``secret`` never verifies. Never raises."""
        ...

    def scrub(self, raw_body: bytes, payload: object) -> tuple[bytes, object]:
        """The raw body and the decoded payload with any secret they carry removed (stored as is)."""
        ...

    def split(self, payload: object) -> list[object]:
        """One payload per membership it concerns (an invoice of several products: one each)."""
        ...

    def envelope(self, body: object) -> Envelope:
        """Read the envelope of any decoded JSON value; never raises."""
        ...

    def parse(self, body: object) -> SourceEvent:
        """Parse any decoded JSON value; never raises."""
        ...

    def dedupe_key(self, raw_body: bytes, event: Envelope) -> str:
        """The key a redelivery of the same event shares (prefixed with the source's name)."""
        ...

    def recognises(self, body: object) -> bool:
        """Whether a decoded body has this platform's shape (``engine dry-run`` without --source)."""
        ...

    # How the platform's API is read as the webhooks it stands for (``engine sync``); None: not read.
    api: PlatformApi | None

    def change_key(self, body: object) -> str | None:
        """The change a body makes (prefixed with the source's name), shared by every event of that
        change whichever way it came (a webhook, ``engine sync``'s reading of the platform's API):
        the second one is a duplicate. None: no such key (the envelope's dedupe key alone)."""
        ...


@dataclass(frozen=True)
class ApiChange:
    """A change the platform's API shows (a sale's status, a subscription's cancellation), as the
    webhook that would have brought it: ``engine sync`` stores it when no event of it is known."""

    product_id: str
    email: str
    event_type: str  # canonical
    status: str  # the platform's status, as its API shows it (for the report)
    transaction: str | None
    subscriber_code: str | None
    # The platform's own date of the change, when it gives one (an approval's, a charge's); None:
    # it gives none, the change came after ``after`` (the newest date it gives the purchase).
    at: datetime | None
    after: datetime | None
    change_key: str | None  # the webhook's (the source's change_key): the same change, whichever way it came
    offer_code: str | None = None
    body: dict[str, Any] = field(default_factory=dict, compare=False)  # the webhook's data, undated


@dataclass(frozen=True)
class ApiSubscription:
    """A subscription as the platform's API shows it (what its sales' webhooks carry of it)."""

    product_id: str
    email: str
    subscriber_code: str
    status: str
    ended: bool  # cancelled: access ends at ``access_until``
    access_until: datetime | None  # the next charge; once cancelled, the last day of access
    started: datetime | None
    item: dict[str, Any] = field(default_factory=dict, compare=False)  # as read


class PlatformApi(Protocol):
    """A platform's API read as its webhooks: which sale statuses to ask for, and each item read
    into what it shows (None: an item that cannot be read, or shows nothing a webhook would have
    brought). Reads only: the caller queries the platform (``connectors/``)."""

    sale_statuses: tuple[str, ...]  # asked for from the sync's starting point on
    late_statuses: tuple[str, ...]  # asked for from further back: they come months after the sale
    late_lookback_days: int
    subscriptions_from: datetime  # every subscription is read, from before the platform sold one

    def subscription(self, item: object) -> ApiSubscription | None: ...

    def sale_change(self, item: object, subscriptions: Mapping[tuple[str, str], ApiSubscription]) -> ApiChange | None:
        """A sale's status as the change it is (``subscriptions``, by (e-mail, product id): the
        buyer's subscription of the product, whose code and plan its webhook carries)."""
        ...

    def cancellation(self, subscription: ApiSubscription) -> ApiChange | None:
        """A cancelled subscription as its cancellation webhook; None when it is not cancelled."""
        ...

    def webhook(self, change: ApiChange, occurred_at: datetime, paid_until: datetime | None = None) -> dict[str, Any]:
        """The change as the platform's webhook body, dated ``occurred_at``; ``paid_until``: the
        date a renewal pays for (the subscription's next charge, for its newest payment)."""
        ...


def no_change_key(body: object) -> None:
    """A source whose API the engine does not read: its webhooks dedupe on their own key alone."""
    return None


class _NotJSON:
    def __repr__(self) -> str:
        return "NOT_JSON"


NOT_JSON: Any = _NotJSON()
"""``decoded`` for a body that is not JSON (a form-encoded body, bytes of nothing)."""


# The flat fields the rules match on (`event.<name>` in conditions and templates): every source
# gives each of them, None where its platform has no such thing.
CANONICAL_FIELDS = (
    "event_type",
    "product_id",
    "offer_code",
    "email",
    "name",
    "phone",
    "transaction",
    "subscriber_code",
    "recurrence_number",
    "date_next_charge",
    "creation_date",
    "purchase_status",
    "payment_type",
    "plan_id",
    "plan_name",
    "is_test",
)


def canonical_fields(event: object) -> dict[str, object]:
    """A parsed event's fields, read off it by name (datetimes as ISO 8601 strings in UTC; no
    ``is_test``: not a test)."""
    values = {name: getattr(event, name, None) for name in CANONICAL_FIELDS}
    values["is_test"] = bool(values["is_test"])
    return {name: value.isoformat() if isinstance(value, datetime) else value for name, value in values.items()}
