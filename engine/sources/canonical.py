"""The one event vocabulary the rules speak, whatever platform sold the course.

Hotmart's v2 event names are the vocabulary (§4 of ``shared/reference/hotmart.md``): the engine
spoke them first, and every rule file uses them. Each other source maps its own names onto
these in one table (its ``canonical``), and keeps its original name in ``source_event``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

CANONICAL_EVENTS: frozenset[str] = frozenset(
    {
        "PURCHASE_APPROVED",
        "PURCHASE_COMPLETE",
        "PURCHASE_BILLET_PRINTED",
        "PURCHASE_DELAYED",
        "PURCHASE_EXPIRED",
        "PURCHASE_CANCELED",
        "PURCHASE_PROTEST",
        "PURCHASE_REFUNDED",
        "PURCHASE_CHARGEBACK",
        "PURCHASE_OUT_OF_SHOPPING_CART",
        "SUBSCRIPTION_CANCELLATION",
        "SWITCH_PLAN",
        "UPDATE_SUBSCRIPTION_CHARGE_DATE",
        "CLUB_FIRST_ACCESS",
        "CLUB_MODULE_COMPLETED",
        "ORDER_FULFILLMENT",
    }
)

# Would grant (or restore) access for a purchase.
GRANTING_EVENTS = frozenset({"PURCHASE_APPROVED", "PURCHASE_COMPLETE", "PURCHASE_BILLET_PRINTED"})
# End a purchase for good: its transaction never grants again.
REVOKING_EVENTS = frozenset({"PURCHASE_REFUNDED", "PURCHASE_CHARGEBACK"})
# Their date_next_charge is the date the payment covers.
PAID_UNTIL_EVENTS = frozenset({"PURCHASE_APPROVED", "UPDATE_SUBSCRIPTION_CHARGE_DATE"})


@dataclass(frozen=True)
class PastEvent:
    """A canonical event a platform's records say happened (read from its API, not received as a
    webhook), with the flat fields a webhook of it would carry (``engine.rules.model.EVENT_FIELDS``)."""

    event_type: str
    at: datetime
    fields: dict[str, Any]
