"""Eduzz's signature: header ``x-signature`` = hex HMAC-SHA256 of the raw body keyed by the
Developer Hub secret key (README.md). Compared in constant time; never raises."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping


def sign(raw_body: bytes, secret: str) -> str:
    return hmac.new(secret.encode("utf-8", "surrogatepass"), raw_body, hashlib.sha256).hexdigest()


def verify(raw_body: bytes, headers: Mapping[str, str], query: Mapping[str, str], secret: str, decoded: object) -> bool:
    got = headers.get("x-signature")
    if not secret or not isinstance(got, str) or not got:
        return False
    expected = sign(raw_body, secret)
    return hmac.compare_digest(got.strip().lower().encode("utf-8", "surrogatepass"), expected.encode())
