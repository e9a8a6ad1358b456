"""The hottok, Hotmart's shared secret (§2): verify a request with it, and remove it from a
body (old Hotmart configurations send it there) before anything is stored (no secret at rest)."""

from __future__ import annotations

import hmac
import re
from typing import Any
from urllib.parse import parse_qs

__all__ = ["REMOVED", "form_hottok", "scrub_payload", "scrub_raw", "verify_hottok"]

REMOVED = "[removed]"
# A JSON member "hottok": <value> (string with escapes, or a bare number/literal).
_JSON_MEMBER = re.compile(rb'("hottok"\s*:\s*)("(?:[^"\\]|\\.)*"|[^,}\]\s]+)', re.IGNORECASE)
# A form field hottok=<value>.
_FORM_FIELD = re.compile(rb"((?:^|[&;])\s*hottok=)[^&;]*", re.IGNORECASE)


def verify_hottok(header_value: str | None, body: object, expected: str) -> bool:
    """Check the shared secret (§2): the X-HOTMART-HOTTOK header, else the body's hottok."""
    if not expected:
        return False
    got = header_value
    # §2: the body field appears only on some payloads, so it is only a fallback.
    if not got and isinstance(body, dict) and isinstance(body.get("hottok"), str):
        got = body["hottok"]
    if not isinstance(got, str) or not got:
        return False
    # surrogatepass: a hostile "\ud800" compares unequal instead of raising.
    return hmac.compare_digest(got.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass"))


def form_hottok(raw: bytes) -> str | None:
    """The ``hottok`` field of a form-encoded body (``a=1&hottok=...``), if it has one."""
    if b"hottok=" not in raw.lower():
        return None
    try:
        fields = parse_qs(raw.decode("utf-8"), keep_blank_values=True, max_num_fields=1000)
    except (UnicodeDecodeError, ValueError):
        return None
    values = fields.get("hottok")
    return values[0] if values else None


def scrub_payload(value: Any) -> Any:
    """The decoded body with a top-level ``hottok`` replaced by ``[removed]`` (a copy if changed)."""
    if isinstance(value, dict) and any(isinstance(k, str) and k.lower() == "hottok" for k in value):
        return {k: (REMOVED if isinstance(k, str) and k.lower() == "hottok" else v) for k, v in value.items()}
    return value


def scrub_raw(raw: bytes) -> bytes:
    """The raw body with every hottok value (JSON member or form field) replaced by ``[removed]``."""
    if b"hottok" not in raw.lower():
        return raw
    raw = _JSON_MEMBER.sub(rb'\1"' + REMOVED.encode() + rb'"', raw)
    return _FORM_FIELD.sub(rb"\1" + REMOVED.encode(), raw)
