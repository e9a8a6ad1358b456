"""Eduzz's signature: header ``x-signature`` = hex HMAC-SHA256 of the raw body keyed by the
Developer Hub secret key (README.md). Compared in constant time; never raises."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from engine.sources.signature import hmac_hex, matches


def sign(raw_body: bytes, secret: str) -> str:
    return hmac_hex(raw_body, secret, hashlib.sha256)


def verify(raw_body: bytes, headers: Mapping[str, str], query: Mapping[str, str], secret: str, decoded: object) -> bool:
    return matches(headers.get("x-signature"), raw_body, secret, hashlib.sha256)
