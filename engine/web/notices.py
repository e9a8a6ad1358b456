"""An action's outcome carried across its redirect (post, redirect, get): a refresh of the page it
lands on shows the outcome again instead of sending the form again.

The outcome travels in the address, signed with the session's own secret (its CSRF token): a link
made by anyone else, or for another session, shows nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any
from urllib.parse import urlencode

from engine.web.i18n import catalogue

PARAM = "done"


def _sign(secret: str, payload: str) -> str:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()[:32]


def notice_location(path: str, secret: str, key: str, *, event_id: int | None = None, **values: Any) -> str:
    """``path`` with the outcome ``key`` (a catalogue key) and its ``values``, signed with ``secret``."""
    body = json.dumps({"k": key, "v": values, "e": event_id}, separators=(",", ":"), ensure_ascii=False)
    payload = base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")
    separator = "&" if "?" in path else "?"
    return f"{path}{separator}{urlencode({PARAM: f'{payload}.{_sign(secret, payload)}'})}"


def read_notice(token: str | None, secret: str) -> tuple[str, dict[str, Any], int | None] | None:
    """The outcome a :func:`notice_location` address carries, or None (absent, altered, unknown key)."""
    if not token or "." not in token:
        return None
    payload, signature = token.rsplit(".", 1)
    if not hmac.compare_digest(signature, _sign(secret, payload)):
        return None
    try:
        body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        key, values, event_id = body["k"], body["v"], body["e"]
    except (ValueError, KeyError, TypeError):
        return None
    if key not in catalogue() or not isinstance(values, dict) or not (event_id is None or isinstance(event_id, int)):
        return None
    return key, values, event_id
