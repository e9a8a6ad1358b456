"""Items of Hotmart's REST API read into the canonical vocabulary: who holds a product, and the
events that led there as the rules would have seen them arrive as webhooks.

The items are those of ``GET /payments/api/v1/subscriptions`` and ``GET /payments/api/v1/sales/history``
(``shared/reference/hotmart-api.md``): dates in epoch milliseconds, a cancelled subscription's
``date_next_charge`` its last day of access. Read with :class:`engine.sources.reader.Reader`:
bounded, never raising; an item without a usable e-mail or product id is unusable, and its
problems say why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from engine.sources.base import CANONICAL_FIELDS
from engine.sources.canonical import PastEvent
from engine.sources.reader import Reader, first

SOURCE_NAME = "hotmart"  # HotmartSource.name: the products' `sources:` key

APPROVED = "PURCHASE_APPROVED"
DELAYED = "PURCHASE_DELAYED"
CANCELLATION = "SUBSCRIPTION_CANCELLATION"

ACTIVE_SUBSCRIPTION = "ACTIVE"
LATE_SUBSCRIPTION = ("DELAYED", "OVERDUE")  # a renewal charge failed
CANCELLED_SUBSCRIPTION = ("CANCELLED_BY_CUSTOMER", "CANCELLED_BY_SELLER", "CANCELLED_BY_ADMIN")
# Every status of a subscription that may still give access: cancelled ones until date_next_charge.
HOLDING_STATUSES = (ACTIVE_SUBSCRIPTION, *LATE_SUBSCRIPTION, *CANCELLED_SUBSCRIPTION)
# The subscriptions list answers for the last 30 days of accessions unless told otherwise, and the
# sales history needs a start: a full scan starts before Hotmart sold anything.
FULL_SCAN_FROM = datetime(2011, 1, 1, tzinfo=UTC)
# The sales history's default answer (no status asked for): the paid purchases, never refunded.
PAID_SALE_STATUSES = ("APPROVED", "COMPLETE")


@dataclass(frozen=True)
class Holding:
    """One buyer's purchase or subscription of one product at Hotmart, and how it got there."""

    kind: str  # "subscription" | "sale"
    status: str | None  # Hotmart's own status
    product_id: str | None
    offer_code: str | None
    email: str | None
    name: str | None
    transaction: str | None
    subscriber_code: str | None
    since: datetime | None  # accession (a subscription) or approval (a sale)
    paid_until: datetime | None  # date_next_charge: a cancelled subscription's last day of access
    history: tuple[PastEvent, ...] = ()
    problems: tuple[str, ...] = field(default_factory=tuple)

    @property
    def usable(self) -> bool:
        return bool(self.email and self.product_id and self.history)

    @property
    def reference(self) -> str:
        """How the operator finds it at Hotmart: the subscriber code or the transaction."""
        return self.subscriber_code or self.transaction or "?"


def _fields(event_type: str, at: datetime, holding: dict[str, Any]) -> dict[str, Any]:
    """A webhook's flat fields (``engine.rules.model.EVENT_FIELDS``) for an event of this holding."""
    values: dict[str, Any] = dict.fromkeys(CANONICAL_FIELDS)
    values.update(holding)
    values.update(event_type=event_type, creation_date=at.isoformat(), is_test=False)
    values.update(source="hotmart", source_event=event_type)
    return values


def subscription(item: object, now: datetime) -> Holding:
    """A subscriptions item: approved at its accession, then late (since the charge that failed:
    its ``date_next_charge`` when past) or cancelled (access until ``date_next_charge``)."""
    r = Reader(item)
    status = r.text("status")
    since = r.when("accession_date")
    paid_until = r.when("date_next_charge")
    holding = {
        "product_id": r.code("product.id"),
        "email": r.email("subscriber.email"),
        "name": r.name("subscriber.name"),
        "transaction": r.code("transaction"),
        "subscriber_code": r.code("subscriber_code"),
        "plan_id": r.code("plan.id"),
        "plan_name": r.text("plan.name"),
        "date_next_charge": paid_until.isoformat() if paid_until else None,
        "purchase_status": "APPROVED",
    }
    history: list[PastEvent] = []
    if since is not None and status in HOLDING_STATUSES:
        history.append(PastEvent(APPROVED, since, _fields(APPROVED, since, holding)))
        if status in LATE_SUBSCRIPTION:
            late_since = max(since, min(paid_until or now, now))
            history.append(PastEvent(DELAYED, late_since, _fields(DELAYED, late_since, holding)))
        elif status in CANCELLED_SUBSCRIPTION:
            # The cancellation's own date is not in the item: it happened by now, after the rest.
            history.append(PastEvent(CANCELLATION, now, _fields(CANCELLATION, now, holding)))
    elif since is None:
        r.problem("accession_date", "missing")
    return _holding("subscription", status, holding, r, since=since, paid_until=paid_until, history=history)


def sale(item: object) -> Holding:
    """A sales history item: a paid purchase (APPROVED or COMPLETE) is approved at its approval date."""
    r = Reader(item)
    status = r.text("purchase.status")
    approved = first(r.when("purchase.approved_date"), r.when("purchase.order_date"))
    holding = {
        "product_id": r.code("product.id"),
        "offer_code": r.code("purchase.offer.code"),
        "email": r.email("buyer.email"),
        "name": r.name("buyer.name"),
        "transaction": r.code("purchase.transaction"),
        "recurrence_number": r.integer("purchase.recurrency_number"),
        "purchase_status": status,
        "payment_type": r.text("purchase.payment.type"),
    }
    history: tuple[PastEvent, ...] = ()
    if approved is not None and status in PAID_SALE_STATUSES:
        history = (PastEvent(APPROVED, approved, _fields(APPROVED, approved, holding)),)
    elif approved is None:
        r.problem("purchase.approved_date", "missing")
    return _holding("sale", status, holding, r, since=approved, paid_until=None, history=history)


def _holding(
    kind: str,
    status: str | None,
    values: dict[str, Any],
    reader: Reader,
    *,
    since: datetime | None,
    paid_until: datetime | None,
    history: Sequence[PastEvent],
) -> Holding:
    return Holding(
        kind=kind,
        status=status,
        product_id=values["product_id"],
        offer_code=values.get("offer_code"),  # the subscriptions API gives no offer
        email=values["email"],
        name=values["name"],
        transaction=values["transaction"],
        subscriber_code=values.get("subscriber_code"),
        since=since,
        paid_until=paid_until,
        history=tuple(history),
        problems=tuple(reader.problems),
    )


def preference(holding: Holding) -> tuple[int, float]:
    """Which of a buyer's holdings of one product counts (the lowest): a subscription that is
    active, then late, then cancelled; the newest first (the last day of access, else the start)."""
    rank = 0
    if holding.status in LATE_SUBSCRIPTION:
        rank = 1
    elif holding.status in CANCELLED_SUBSCRIPTION:
        rank = 2
    newest = holding.paid_until or holding.since
    return rank, -(newest.timestamp() if newest else 0.0)
