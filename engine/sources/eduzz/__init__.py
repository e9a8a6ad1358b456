"""Eduzz (Developer Hub webhooks) as a :class:`engine.sources.base.Source` (facts: README.md here).

* :mod:`.events`: Eduzz's event names, contract statuses, and the canonical name each means;
* :mod:`.event`: a body read into the canonical :class:`EduzzEvent`, its envelope, dedupe key, and
  one body per product of an invoice;
* :mod:`.signature`: the HMAC-SHA256 ``x-signature`` header.
"""

from __future__ import annotations

from collections.abc import Mapping

from engine.sources.base import no_change_key
from engine.sources.canonical import GRANTING_EVENTS, PAID_UNTIL_EVENTS, REVOKING_EVENTS
from engine.sources.eduzz.event import EduzzEvent, dedupe_key, envelope, parse, split
from engine.sources.eduzz.events import CANONICAL, EDUZZ_EVENTS, MEANINGLESS
from engine.sources.eduzz.signature import sign, verify

__all__ = ["SOURCE", "EduzzEvent", "EduzzSource", "parse", "sign", "verify"]


class EduzzSource:
    """Eduzz as a :class:`engine.sources.base.Source`."""

    name = "eduzz"
    title = "Eduzz"
    events = EDUZZ_EVENTS
    canonical: Mapping[str, str] = CANONICAL
    meaningless: Mapping[str, str] = MEANINGLESS
    granting_events = GRANTING_EVENTS
    revoking_events = REVOKING_EVENTS
    paid_until_events = PAID_UNTIL_EVENTS
    secret_setting = "eduzz_secret"
    enabled_setting = "eduzz_enabled"
    secret_headers: frozenset[str] = frozenset()
    unauthorized = "invalid or missing Eduzz x-signature"
    silence_hint = (
        "Eduzz deactivates a URL after 3 failed tries (or queues to its backup for 7 days): check "
        "Developer Hub > Webhooks (status, Histórico de Envios) and that the API is reachable"
    )
    product_id_schema = {"type": ["integer", "string"], "pattern": "^[0-9]{1,20}$", "minimum": 1}
    product_id_example = "123456"
    product_id_hint = "an Eduzz product id is digits only, e.g. 123456"

    envelope = staticmethod(envelope)
    parse = staticmethod(parse)
    dedupe_key = staticmethod(dedupe_key)
    change_key = staticmethod(no_change_key)
    api = None  # its API is not read (engine sync)
    verify = staticmethod(verify)
    split = staticmethod(split)

    @staticmethod
    def scrub(raw_body: bytes, payload: object) -> tuple[bytes, object]:
        return raw_body, payload  # the secret is never sent

    @staticmethod
    def recognises(body: object) -> bool:
        if not isinstance(body, dict) or not isinstance(body.get("event"), str):
            return False
        return body["event"].startswith(("myeduzz.", "sun.")) or "sentDate" in body


SOURCE = EduzzSource()
