"""Hotmart's event names (§4 of ``shared/reference/hotmart.md``): they are the canonical
vocabulary (:mod:`engine.sources.canonical`), so Hotmart's table maps each onto itself."""

from __future__ import annotations

from engine.sources.canonical import CANONICAL_EVENTS, GRANTING_EVENTS, PAID_UNTIL_EVENTS, REVOKING_EVENTS

# §4: every v2 event name. Others (SUBSCRIPTION_RENEWED, CART_ABANDONMENT ...) do not exist.
HOTMART_EVENTS: frozenset[str] = CANONICAL_EVENTS
CANONICAL: dict[str, str] = {name: name for name in HOTMART_EVENTS}

__all__ = ["CANONICAL", "GRANTING_EVENTS", "HOTMART_EVENTS", "PAID_UNTIL_EVENTS", "REVOKING_EVENTS"]
