"""Kiwify's signature: the query parameter ``signature`` = lowercase hex HMAC-SHA1 of the raw
body keyed by the webhook token (README.md). Compared in constant time; never raises."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping


def sign(raw_body: bytes, token: str) -> str:
    return hmac.new(token.encode("utf-8", "surrogatepass"), raw_body, hashlib.sha1).hexdigest()


def verify(raw_body: bytes, headers: Mapping[str, str], query: Mapping[str, str], secret: str, decoded: object) -> bool:
    got = query.get("signature")
    if not secret or not isinstance(got, str) or not got:
        return False
    expected = sign(raw_body, secret)
    return hmac.compare_digest(got.strip().lower().encode("utf-8", "surrogatepass"), expected.encode())
