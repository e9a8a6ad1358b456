"""Naming what went wrong on a Discord request: a reply's status and JSON error code as a wire error.

Error codes follow ``shared/reference/discord.md``. :mod:`connectors.discord_client` raises
what these functions build; the adapter reads ``error_code`` for the replies it expects
(an unknown member is not a failure there).
"""

from __future__ import annotations

import httpx

from connectors._http import classify_transport, json_or_none, seconds
from connectors.errors import Misconfigured, Rejected, Unavailable, WireError

_CONFIG_CODES = {10003: "unknown channel", 10004: "unknown guild", 50001: "missing access"}
_DM_CLOSED_CODES = {50007, 50278}
_HIERARCHY_HINT = (
    "Move the bot's role above the course roles in Server Settings → Roles and make sure it has Manage Roles."
)


def failure(response: httpx.Response, what: str, *, deduped: bool = True) -> WireError:
    """Name a non-2xx response (not 401/429: the client handles those while sending)."""
    status = response.status_code
    code = error_code(response)
    text = f"{what}: HTTP {status} {error_message(response)}"
    if code is not None:
        text += f" (code {code})"
    if status >= 500:
        return Unavailable("discord.unavailable", text, maybe_delivered=not deduped, response=response)
    if code == 50013:
        hint = _HIERARCHY_HINT if "role" in what else "Give the bot View Channel and Send Messages there."
        return Misconfigured("discord.forbidden", f"{text}. {hint}", response=response)
    if code == 10011:
        return Misconfigured(
            "discord.unknown_role", f"{text}: check the role ids in rules/ against the server", response=response
        )
    if code in _CONFIG_CODES:
        return Misconfigured(
            "discord.config", f"{text}: {_CONFIG_CODES[code]}; check the Discord settings", response=response
        )
    if code in _DM_CLOSED_CODES:
        return Rejected("discord.dm_closed", f"{text}: the user does not accept DMs", response=response)
    if status == 403:
        return Misconfigured("discord.forbidden", text, response=response)
    return Rejected("discord.bad_request", text, response=response)


def transport_failure(exc: httpx.HTTPError, what: str, *, deduped: bool) -> Unavailable:
    failure = classify_transport(exc)
    kind = "timeout" if failure.timeout else "connection error"
    return Unavailable(
        "discord.unavailable",
        f"{what}: {kind} ({type(exc).__name__})",
        maybe_delivered=failure.reached and not deduped,
    )


def error_code(response: httpx.Response) -> int | None:
    body = json_or_none(response)
    code = body.get("code") if isinstance(body, dict) else None
    return code if isinstance(code, int) else None


def error_message(response: httpx.Response) -> str:
    body = json_or_none(response)
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"][:200]
    return response.reason_phrase or "(no JSON body)"


def retry_after(response: httpx.Response) -> float | None:
    """Seconds to wait from a Discord 429, or None when it is not Discord's JSON."""
    body = json_or_none(response)
    if not isinstance(body, dict):
        return None
    for value in (body.get("retry_after"), response.headers.get("retry-after")):
        delay = seconds(value) if value is not None else None
        if delay is not None:
            return delay
    return None


def is_global(response: httpx.Response) -> bool:
    body = json_or_none(response)
    if isinstance(body, dict) and body.get("global") is True:
        return True
    return response.headers.get("x-ratelimit-global", "").lower() == "true"
