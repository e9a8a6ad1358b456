"""Hotmart's event names (§4 of ``shared/reference/hotmart.md``) and what the engine reads into them.

The rules may name any of these; the three groups below are the platform's meaning that
holds whatever the rules say (see :class:`engine.sources.base.Source`).
"""

from __future__ import annotations

# §4: every v2 event name. Others (SUBSCRIPTION_RENEWED, CART_ABANDONMENT ...) do not exist.
HOTMART_EVENTS: frozenset[str] = frozenset(
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
