"""Hotmart, the engine's first payment platform, as a :class:`engine.sources.base.Source`.

Section numbers (§) in this package refer to ``shared/reference/hotmart.md``. Its rooms:

* :mod:`.events`: the v2 event names (the canonical vocabulary itself);
* :mod:`.identity`: which event a body is: its envelope, read without a full parse, and its dedupe key;
* :mod:`.event`: a v2 body parsed into the canonical :class:`HotmartEvent` the rules decide on
  (its phone fields read into :func:`engine.sources.phone.normalize_phone`);
* :mod:`.hottok`: the shared secret: verifying a request, scrubbing it before anything is stored;
* :mod:`.api_items`: Hotmart's REST API (not its webhooks): a subscription or sale item read into
  the canonical events that led to it (``engine import-students --from hotmart``);
* :mod:`.api_changes`: the same items read as the webhooks that never came, one change each, for
  ``engine sync hotmart``.
"""

from __future__ import annotations

from collections.abc import Mapping

from engine.sources.base import NOT_JSON
from engine.sources.hotmart.api_changes import HotmartApiChanges
from engine.sources.hotmart.event import HotmartEvent, parse
from engine.sources.hotmart.events import (
    CANONICAL,
    GRANTING_EVENTS,
    HOTMART_EVENTS,
    PAID_UNTIL_EVENTS,
    REVOKING_EVENTS,
)
from engine.sources.hotmart.hottok import form_hottok, scrub_payload, scrub_raw, verify_hottok
from engine.sources.hotmart.identity import Envelope, change_key, dedupe_key, envelope
from engine.sources.reader import MAX_CODE_LENGTH, MAX_EMAIL_LENGTH, MAX_INTEGER, MAX_NAME_LENGTH

__all__ = [
    "HOTMART_EVENTS",
    "MAX_CODE_LENGTH",
    "MAX_EMAIL_LENGTH",
    "MAX_INTEGER",
    "MAX_NAME_LENGTH",
    "SOURCE",
    "Envelope",
    "HotmartEvent",
    "HotmartSource",
    "dedupe_key",
    "envelope",
    "parse",
    "verify_hottok",
]


class HotmartSource:
    """Hotmart as a :class:`engine.sources.base.Source`."""

    name = "hotmart"
    title = "Hotmart"
    events = HOTMART_EVENTS
    canonical: Mapping[str, str] = CANONICAL
    meaningless: Mapping[str, str] = {}
    granting_events = GRANTING_EVENTS
    revoking_events = REVOKING_EVENTS
    paid_until_events = PAID_UNTIL_EVENTS
    secret_setting = "hotmart_hottok"
    enabled_setting = "hotmart_enabled"
    secret_headers = frozenset({"x-hotmart-hottok"})
    unauthorized = "invalid hottok"
    silence_hint = (
        "Hotmart disables a webhook URL that keeps failing: check Hotmart > Tools > Webhook "
        "(URL status, failed deliveries) and that the API is reachable"
    )
    # Written `hotmart_product_ids: [...]` before products named their sources (still read).
    legacy_product_ids_key = "hotmart_product_ids"
    product_id_schema = {"type": ["integer", "string"], "pattern": "^[0-9]+$", "minimum": 1}
    product_id_example = "1111111"
    product_id_hint = "a Hotmart product id is digits only, e.g. 1111111"

    envelope = staticmethod(envelope)
    parse = staticmethod(parse)
    dedupe_key = staticmethod(dedupe_key)
    change_key = staticmethod(change_key)
    api = HotmartApiChanges()

    @staticmethod
    def verify(
        raw_body: bytes, headers: Mapping[str, str], query: Mapping[str, str], secret: str, decoded: object
    ) -> bool:
        """§2: the X-HOTMART-HOTTOK header, else the body's hottok. A body that is not JSON (an old
        form-encoded webhook) may carry it as a form field: verified, it is told what is wrong."""
        header = headers.get("x-hotmart-hottok")
        if decoded is NOT_JSON:
            return verify_hottok(header, None, secret) or verify_hottok(form_hottok(raw_body), None, secret)
        return verify_hottok(header, decoded, secret)

    @staticmethod
    def scrub(raw_body: bytes, payload: object) -> tuple[bytes, object]:
        return scrub_raw(raw_body), scrub_payload(payload)

    @staticmethod
    def split(payload: object) -> list[object]:
        return [payload]  # one product per event

    @staticmethod
    def recognises(body: object) -> bool:
        return isinstance(body, dict) and "event" in body and ("data" in body or "version" in body)


SOURCE = HotmartSource()
