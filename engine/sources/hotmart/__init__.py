"""Hotmart, the one payment platform today, as a :class:`engine.sources.base.Source`.

Section numbers (§) in this package refer to ``shared/reference/hotmart.md``. Its rooms:

* :mod:`.events`: the v2 event names and which of them grant, revoke or carry a paid-until date;
* :mod:`.reader`: reading dotted paths out of any JSON value, bounded, problems instead of errors;
* :mod:`.identity`: which event a body is: its envelope, read without a full parse, and its dedupe key;
* :mod:`.event`: a v2 body parsed into the canonical :class:`HotmartEvent` the rules decide on;
* :mod:`.phone`: Hotmart's phone fields as E.164;
* :mod:`.hottok`: the shared secret: verifying a request, scrubbing it before anything is stored.
"""

from __future__ import annotations

from engine.sources.hotmart.event import HotmartEvent, parse
from engine.sources.hotmart.events import GRANTING_EVENTS, HOTMART_EVENTS, PAID_UNTIL_EVENTS, REVOKING_EVENTS
from engine.sources.hotmart.hottok import verify_hottok
from engine.sources.hotmart.identity import Envelope, dedupe_key, envelope
from engine.sources.hotmart.phone import normalize_phone
from engine.sources.hotmart.reader import MAX_CODE_LENGTH, MAX_EMAIL_LENGTH, MAX_INTEGER, MAX_NAME_LENGTH

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
    "normalize_phone",
    "parse",
    "verify_hottok",
]


class HotmartSource:
    """Hotmart as a :class:`engine.sources.base.Source`."""

    name = "hotmart"
    events = HOTMART_EVENTS
    granting_events = GRANTING_EVENTS
    revoking_events = REVOKING_EVENTS
    paid_until_events = PAID_UNTIL_EVENTS

    envelope = staticmethod(envelope)
    parse = staticmethod(parse)
    dedupe_key = staticmethod(dedupe_key)
    verify = staticmethod(verify_hottok)


SOURCE = HotmartSource()
