"""Kiwify's event names (``webhook_event_type``) and the canonical name each one means."""

from __future__ import annotations

# An abandoned cart carries no webhook_event_type: the engine names it so.
ABANDONED_CART = "abandoned_cart"

CANONICAL: dict[str, str] = {
    "order_approved": "PURCHASE_APPROVED",
    "subscription_renewed": "PURCHASE_APPROVED",  # a renewal charge approved (a new order_id)
    "order_refunded": "PURCHASE_REFUNDED",
    "chargeback": "PURCHASE_CHARGEBACK",
    "subscription_late": "PURCHASE_DELAYED",  # each failed retry of a charge
    "subscription_canceled": "SUBSCRIPTION_CANCELLATION",  # retries exhausted, or cancelled
    "billet_created": "PURCHASE_BILLET_PRINTED",
    "pix_created": "PURCHASE_BILLET_PRINTED",  # waiting for payment, as Hotmart's for a PIX
    "order_rejected": "PURCHASE_CANCELED",  # card refused: Hotmart's PURCHASE_CANCELED
    ABANDONED_CART: "PURCHASE_OUT_OF_SHOPPING_CART",
}

KIWIFY_EVENTS: frozenset[str] = frozenset(CANONICAL)
