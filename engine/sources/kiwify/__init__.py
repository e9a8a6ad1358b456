"""Kiwify as a :class:`engine.sources.base.Source` (facts and their links: README.md here).

* :mod:`.events`: Kiwify's event names and the canonical name each means;
* :mod:`.event`: a body read into the canonical :class:`KiwifyEvent`, its envelope and dedupe key;
* :mod:`.signature`: the HMAC-SHA1 ``signature`` query parameter.
"""

from __future__ import annotations

from collections.abc import Mapping

from engine.sources.base import no_change_key
from engine.sources.canonical import GRANTING_EVENTS, PAID_UNTIL_EVENTS, REVOKING_EVENTS
from engine.sources.kiwify.event import KiwifyEvent, dedupe_key, envelope, parse
from engine.sources.kiwify.events import CANONICAL, KIWIFY_EVENTS
from engine.sources.kiwify.signature import sign, verify

__all__ = ["SOURCE", "KiwifyEvent", "KiwifySource", "parse", "sign", "verify"]


class KiwifySource:
    """Kiwify as a :class:`engine.sources.base.Source`."""

    name = "kiwify"
    title = "Kiwify"
    events = KIWIFY_EVENTS
    canonical: Mapping[str, str] = CANONICAL
    meaningless: Mapping[str, str] = {}
    granting_events = GRANTING_EVENTS
    revoking_events = REVOKING_EVENTS
    paid_until_events = PAID_UNTIL_EVENTS
    secret_setting = "kiwify_token"
    enabled_setting = "kiwify_enabled"
    secret_headers: frozenset[str] = frozenset()
    unauthorized = "invalid or missing Kiwify signature"
    silence_hint = (
        "check Kiwify > Apps > Webhooks (the URL, its token, failed deliveries) and that the API is reachable"
    )
    product_id_schema = {"type": "string", "pattern": "^[A-Za-z0-9-]{1,64}$"}
    product_id_example = '"a1b2c3"'
    product_id_hint = 'a Kiwify product id is letters, digits and -, in quotes, e.g. "a1b2c3"'

    envelope = staticmethod(envelope)
    parse = staticmethod(parse)
    dedupe_key = staticmethod(dedupe_key)
    change_key = staticmethod(no_change_key)
    api = None  # its API is not read (engine sync)
    verify = staticmethod(verify)

    @staticmethod
    def scrub(raw_body: bytes, payload: object) -> tuple[bytes, object]:
        return raw_body, payload  # the token is never sent

    @staticmethod
    def split(payload: object) -> list[object]:
        return [payload]  # one product per order

    @staticmethod
    def recognises(body: object) -> bool:
        if not isinstance(body, dict):
            return False
        cart = body.get("status") == "abandoned" and "checkout_link" in body
        return cart or "webhook_event_type" in body or "Customer" in body or "order_id" in body


SOURCE = KiwifySource()
