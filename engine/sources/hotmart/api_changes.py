"""Hotmart's REST API items read as the v2 webhooks they stand for (``engine sync hotmart``).

The sales history shows each purchase's latest status and the subscriptions list each
subscription's (``shared/reference/hotmart-api.md``); a status the engine never heard of is a
webhook that never came. Each item becomes the body that webhook would have had (§3: the paths
:mod:`.event` reads), so the rules decide on it exactly as on the webhook, and its change key
(:func:`.identity.change_key`) is the webhook's: whichever comes second is a duplicate.

Hotmart's API gives a sale no date for a refund or a chargeback, and a subscription none for its
cancellation: such a change is dated by the caller, after the newest date known of the purchase
(:attr:`ApiChange.after`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from engine.sources.base import ApiChange, ApiSubscription
from engine.sources.hotmart.api_items import CANCELLED_SUBSCRIPTION, FULL_SCAN_FROM
from engine.sources.hotmart.identity import CANCELLATION, change_key
from engine.sources.reader import Reader

# A sales history status -> (the event a webhook brought, the purchase status that webhook
# carried: §4's observed spellings). COMPLETE was approved first: the grant is the change that
# matters (the completion itself changes no access). Without a status filter the history shows
# only APPROVED and COMPLETE: every other status is asked for by name.
SALE_EVENTS: dict[str, tuple[str, str]] = {
    "APPROVED": ("PURCHASE_APPROVED", "APPROVED"),
    "COMPLETE": ("PURCHASE_APPROVED", "APPROVED"),
    "OVERDUE": ("PURCHASE_DELAYED", "DELAYED"),
    "CANCELLED": ("PURCHASE_CANCELED", "CANCELED"),
    "PROTESTED": ("PURCHASE_PROTEST", "DISPUTE"),
    "REFUNDED": ("PURCHASE_REFUNDED", "REFUNDED"),
    "CHARGEBACK": ("PURCHASE_CHARGEBACK", "CHARGEBACK"),
}
# A refund, a dispute or a chargeback may come months after the sale (a card's chargeback window):
# asked for from further back than the sync's starting point.
LATE_STATUSES = ("PROTESTED", "REFUNDED", "CHARGEBACK")
LATE_LOOKBACK_DAYS = 180
# Only these have a date of their own in the item: a charge's (an approval's, an overdue one's).
_DATED = {"APPROVED": "purchase.approved_date", "COMPLETE": "purchase.approved_date", "OVERDUE": "purchase.order_date"}
CANCELLED = frozenset(CANCELLED_SUBSCRIPTION)


class HotmartApiChanges:
    """:class:`engine.sources.base.PlatformApi` for Hotmart."""

    sale_statuses = tuple(status for status in SALE_EVENTS if status not in LATE_STATUSES)
    late_statuses = LATE_STATUSES
    late_lookback_days = LATE_LOOKBACK_DAYS
    subscriptions_from = FULL_SCAN_FROM

    @staticmethod
    def subscription(item: object) -> ApiSubscription | None:
        r = Reader(item)
        product_id, email = r.code("product.id"), r.email("subscriber.email")
        code, status = r.code("subscriber_code"), r.text("status")
        if not (product_id and email and code and status):
            return None
        return ApiSubscription(
            product_id=product_id,
            email=email,
            subscriber_code=code,
            status=status.upper(),
            ended=status.upper() in CANCELLED,
            access_until=r.when("date_next_charge"),
            started=r.when("accession_date"),
            item=item if isinstance(item, dict) else {},
        )

    @staticmethod
    def sale_change(item: object, subscriptions: Mapping[tuple[str, str], ApiSubscription]) -> ApiChange | None:
        r = Reader(item)
        status = (r.text("purchase.status") or "").upper()
        product_id, email, transaction = r.code("product.id"), r.email("buyer.email"), r.code("purchase.transaction")
        if status not in SALE_EVENTS or not (product_id and email and transaction):
            return None
        subscription = subscriptions.get((email, product_id))
        event_type, purchase_status = SALE_EVENTS[status]
        approved, ordered = r.when("purchase.approved_date"), r.when("purchase.order_date")
        offer = r.code("purchase.offer.code")
        purchase: dict[str, Any] = {
            "transaction": transaction,
            "status": purchase_status,
            "order_date": _ms(ordered),
            "approved_date": _ms(approved),
            "recurrence_number": r.integer("purchase.recurrency_number"),  # the webhook's spelling
            "offer": _present({"code": offer}),
            "payment": _present({"type": r.text("purchase.payment.type")}),
        }
        data: dict[str, Any] = {
            "product": {"id": product_id, "name": r.text("product.name")},
            "buyer": {"email": email, "name": r.name("buyer.name")},
            "purchase": _present(purchase),
        }
        if subscription is not None:
            data["subscription"] = {
                "status": subscription.status,
                "plan": _plan(Reader(subscription.item)),
                "subscriber": {"code": subscription.subscriber_code},
            }
        dated = _DATED.get(status)
        return ApiChange(
            change_key=change_key({"event": event_type, "data": data}),
            product_id=product_id,
            email=email,
            event_type=event_type,
            status=status,
            transaction=transaction,
            subscriber_code=subscription.subscriber_code if subscription else None,
            at=r.when(dated) if dated else None,
            after=max((d for d in (approved, ordered) if d is not None), default=None),
            offer_code=offer,
            body=data,
        )

    @staticmethod
    def cancellation(subscription: ApiSubscription) -> ApiChange | None:
        if not subscription.ended or subscription.access_until is None:
            return None
        r = Reader(subscription.item)
        data = {
            "date_next_charge": _ms(subscription.access_until),  # §3.2: the last day of access
            "product": {"id": subscription.product_id, "name": r.text("product.name")},
            "subscriber": _present(
                {"code": subscription.subscriber_code, "name": r.name("subscriber.name"), "email": subscription.email}
            ),
            "subscription": _present({"id": r.code("subscription_id"), "plan": _plan(r)}),
        }
        return ApiChange(
            change_key=change_key({"event": CANCELLATION, "data": data}),
            product_id=subscription.product_id,
            email=subscription.email,
            event_type=CANCELLATION,
            status=subscription.status,
            transaction=None,
            subscriber_code=subscription.subscriber_code,
            at=None,
            after=subscription.started,
            body=data,
        )

    @staticmethod
    def webhook(change: ApiChange, occurred_at: datetime, paid_until: datetime | None = None) -> dict[str, Any]:
        data = {key: dict(value) if isinstance(value, dict) else value for key, value in change.body.items()}
        if paid_until is not None and "purchase" in data:
            data["purchase"]["date_next_charge"] = _ms(paid_until)
        body = {"creation_date": _ms(occurred_at), "event": change.event_type, "version": "2.0.0", "data": data}
        key = change.change_key or f"{change.event_type}:{change.transaction or change.subscriber_code}"
        # The envelope id the webhook would have had is unknown: one of the change's own (the same
        # change read twice is one event), never one of Hotmart's (a UUID).
        return {"id": "hotmart-api-" + hashlib.sha256(key.encode()).hexdigest()[:32], **body}


def _ms(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)


def _plan(r: Reader) -> dict[str, Any]:
    return _present({"id": r.code("plan.id"), "name": r.text("plan.name")})


def _present(values: dict[str, Any]) -> dict[str, Any]:
    """Hotmart omits the fields it has no value for (§3.1)."""
    return {key: value for key, value in values.items() if value is not None and value != {}}


__all__ = ["CANCELLED", "LATE_STATUSES", "SALE_EVENTS", "HotmartApiChanges"]
