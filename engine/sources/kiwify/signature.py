"""Kiwify's signature: the query parameter ``signature`` = lowercase hex HMAC-SHA1 of the raw
body keyed by the webhook token (README.md). Compared in constant time; never raises."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from engine.sources.signature import hmac_hex, matches


def sign(raw_body: bytes, token: str) -> str:
    return hmac_hex(raw_body, token, hashlib.sha1)


def verify(raw_body: bytes, headers: Mapping[str, str], query: Mapping[str, str], secret: str, decoded: object) -> bool:
    return matches(query.get("signature"), raw_body, secret, hashlib.sha1)
