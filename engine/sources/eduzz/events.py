"""Eduzz's event names and the canonical name each means; subscription (contract) events mean
what their contract's status says."""

from __future__ import annotations

CANONICAL: dict[str, str] = {
    "myeduzz.invoice_paid": "PURCHASE_APPROVED",
    "myeduzz.invoice_refunded": "PURCHASE_REFUNDED",
    "myeduzz.invoice_chargeback": "PURCHASE_CHARGEBACK",
    "myeduzz.invoice_canceled": "PURCHASE_CANCELED",
    "myeduzz.invoice_refused": "PURCHASE_CANCELED",  # a refused card: Hotmart's PURCHASE_CANCELED
    "myeduzz.invoice_overdue": "PURCHASE_DELAYED",
    "myeduzz.invoice_waiting_payment": "PURCHASE_BILLET_PRINTED",
    "myeduzz.invoice_expired": "PURCHASE_EXPIRED",
    "sun.cart_abandonment": "PURCHASE_OUT_OF_SHOPPING_CART",
}

# Stored and ignored: the engine acts on the invoice events these accompany.
MEANINGLESS: dict[str, str] = {
    "myeduzz.invoice_opened": "Eduzz invoice opened: nothing to do until it is paid",
    "myeduzz.invoice_waiting_refund": "Eduzz refund requested: access ends with invoice_refunded",
    "myeduzz.invoice_recovering": "Eduzz is recovering the payment: access follows the invoice events",
    "myeduzz.invoice_negotiated": "Eduzz invoice negotiated: access follows the invoice events",
    "myeduzz.invoice_scheduled": "Eduzz invoice scheduled: nothing to do until it is paid",
}

CONTRACT_PREFIX = "myeduzz.contract_"
# A contract event's meaning, by data.contract.status (None: ignored, with the reason).
CONTRACT_STATUS: dict[str, str | None] = {
    "canceled": "SUBSCRIPTION_CANCELLATION",
    "late": "PURCHASE_DELAYED",
    "defaulter": "PURCHASE_DELAYED",
    "suspended": "PURCHASE_DELAYED",
    "upToDate": None,
    "awaitingPayment": None,
    "trial": None,
    "finished": None,
    "free": None,
}

EDUZZ_EVENTS: frozenset[str] = frozenset(CANONICAL) | frozenset(MEANINGLESS)
