"""Webhook signatures that are a hex HMAC of the raw body (Kiwify's SHA-1, Eduzz's SHA-256).

Computed on the bytes as received, compared in constant time; a verifier never raises.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable


def hmac_hex(raw_body: bytes, key: str, digest: Callable) -> str:
    """The lowercase hex HMAC of the body (``digest``: ``hashlib.sha1``, ``hashlib.sha256`` ...)."""
    return hmac.new(key.encode("utf-8", "surrogatepass"), raw_body, digest).hexdigest()


def matches(got: object, raw_body: bytes, key: str, digest: Callable) -> bool:
    """Whether ``got`` (the platform's signature as sent) is the body's HMAC under ``key``."""
    if not key or not isinstance(got, str) or not got:
        return False
    expected = hmac_hex(raw_body, key, digest)
    return hmac.compare_digest(got.strip().lower().encode("utf-8", "surrogatepass"), expected.encode())
