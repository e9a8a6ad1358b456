"""Discord step adapter: course roles, admin alerts and DMs as steps and queries.

Maps ``add_role`` / ``remove_role`` / ``send_dm`` steps and the reconciliation queries
onto :class:`~connectors.discord_client.DiscordClient`, which owns the wire: routes,
rate-limit buckets, 429s, invalid-request pacing and naming failures. The client raises
:class:`~connectors.errors.WireError`; a step turns it into its failed result, a query
(``get_member``, ``list_members``) lets it through.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator
from typing import Any

from connectors._http import json_or_none
from connectors.base import Step, StepContext, StepResult, StepStatus
from connectors.discord_client import DiscordClient, Route
from connectors.discord_failures import error_code, error_message
from connectors.errors import Misconfigured, Rejected, Unavailable, WireError

__all__ = ["DiscordConnector"]

_ROLE_ROUTE = "/guilds/{guild_id}/members/{user_id}/roles/{role_id}"
_MEMBER_ROUTE = "/guilds/{guild_id}/members/{user_id}"
_MEMBERS_ROUTE = "/guilds/{guild_id}/members"
_MEMBERS_PAGE = 1000  # List Guild Members' largest page (discord.md 2.4a)
_MESSAGE_ROUTE = "/channels/{channel_id}/messages"
_DM_ROUTE = "/users/@me/channels"
_SNOWFLAKE = re.compile(r"^[0-9]{1,20}$")  # also keeps "../" and friends out of URLs
_MAX_CONTENT = 2000
_MAX_NONCE = 25


class DiscordConnector:
    """Runs ``add_role`` / ``remove_role`` / ``send_dm`` steps against one guild."""

    name = "discord"
    actions = frozenset({"add_role", "remove_role", "send_dm"})

    def __init__(self, token: str, guild_id: str, *, alert_channel_id: str = "", **wire: Any):
        """``wire``: the :class:`DiscordClient` options (api_base, transport, timeout,
        global_rate, sleep, clock, limiter, wrap_transport), passed through unchanged."""
        self._guild_id = str(guild_id)
        self._alert_channel_id = str(alert_channel_id or "")
        self._wire = DiscordClient(token, **wire)
        self._lock = threading.Lock()  # guards the DM channel cache
        self._dm_channels: dict[str, str] = {}

    # -- public -------------------------------------------------------------------

    def run(self, step: Step, ctx: StepContext) -> StepResult:
        if step.action == "add_role":
            return self._change_roles(step, ctx, add=True)
        if step.action == "remove_role":
            return self._change_roles(step, ctx, add=False)
        if step.action == "send_dm":
            return self._send_dm(step, ctx)
        return StepResult.failed("discord.bad_request", f"unknown action {step.action!r}")

    def get_member(self, user_id: str) -> dict | None:
        """The guild member object, or None when the user is not in the guild (10007).

        Raises :class:`~connectors.errors.WireError` when Discord cannot be asked.
        """
        user_id = str(user_id)
        what = f"get member {user_id}"
        if not _SNOWFLAKE.match(user_id):
            raise Rejected("discord.bad_request", f"{what}: bad user id")
        route = Route("GET", _MEMBER_ROUTE, {"guild_id": self._guild_id, "user_id": user_id})
        try:
            out = self._wire.send(route, what)
        except Rejected as exc:
            if _unknown_member(exc):
                return None
            raise
        body = json_or_none(out)
        if isinstance(body, dict):
            return body
        raise Unavailable("discord.unavailable", f"{what}: no JSON body", response=out)

    def list_members(self, *, page_size: int = _MEMBERS_PAGE) -> Iterator[dict]:
        """Every member of the guild, by user id (List Guild Members, paged; reconciliation).

        Needs the Server Members intent: without it Discord refuses (403) and this raises
        :class:`~connectors.errors.Misconfigured` with ``discord.intent``. Paced like every other call.
        """
        route = Route("GET", _MEMBERS_ROUTE, {"guild_id": self._guild_id})
        after = "0"
        while True:
            what = f"list guild members after {after}"
            try:
                out = self._wire.send(route, what, params={"limit": page_size, "after": after})
            except Rejected as exc:
                if exc.response is None or exc.response.status_code != 403:
                    raise
                raise Misconfigured(
                    "discord.intent",
                    f"{what}: HTTP 403 {error_message(exc.response)}: turn on the Server Members Intent "
                    "(Developer Portal → Bot) and run engine doctor --discord",
                    response=exc.response,
                ) from exc
            page = json_or_none(out)
            if not isinstance(page, list):
                raise Unavailable("discord.unavailable", f"{what}: no JSON list", response=out)
            yield from page
            if len(page) < page_size:
                return
            after = max((str(m.get("user", {}).get("id", "0")) for m in page), key=int)

    def post_message(self, channel_id: str, content: str, *, nonce: str | None = None) -> StepResult:
        """Post ``content`` (cut to 2000 chars, mentions disabled) in a channel.

        With a ``nonce``, Discord returns the existing message when the same nonce is
        sent again within a few minutes, so retrying is safe.
        """
        channel_id = str(channel_id)
        what = f"post message in channel {channel_id}"
        if not _SNOWFLAKE.match(channel_id):
            return StepResult.failed("discord.bad_request", f"{what}: bad channel id")
        if not content:
            return StepResult.failed("discord.bad_request", f"{what}: empty content")
        if len(content) > _MAX_CONTENT:
            content = content[: _MAX_CONTENT - 1] + "…"
        payload: dict[str, Any] = {"content": content, "allowed_mentions": {"parse": []}}
        if nonce:
            payload["nonce"] = _short_nonce(nonce)
            payload["enforce_nonce"] = True
        route = Route("POST", _MESSAGE_ROUTE, {"channel_id": channel_id})
        try:
            out = self._wire.send(route, what, json=payload, deduped=bool(nonce))
        except WireError as exc:
            return exc.result
        body = json_or_none(out)
        message_id = body.get("id") if isinstance(body, dict) else None
        return StepResult.done(f"posted in channel {channel_id}", message_id=message_id)

    def post_alert(self, content: str, *, nonce: str | None = None) -> StepResult:
        """Post an admin alert in ``alert_channel_id``; skipped when none is configured."""
        if not self._alert_channel_id:
            return StepResult.skipped("no Discord alert channel configured")
        return self.post_message(self._alert_channel_id, content, nonce=nonce)

    def close(self) -> None:
        self._wire.close()

    # -- steps --------------------------------------------------------------------

    def _change_roles(self, step: Step, ctx: StepContext, *, add: bool) -> StepResult:
        verb = "add" if add else "remove"
        role_ids = step.params.get("role_ids")
        if not isinstance(role_ids, list | tuple) or not all(_SNOWFLAKE.match(str(r)) for r in role_ids):
            return StepResult.failed("discord.bad_request", f"{verb}_role: role_ids must be a list of snowflakes")
        user_id = ctx.student.discord_id
        if not user_id:
            if not add:
                return StepResult.done("no Discord account linked: nothing to remove")
            return StepResult(
                StepStatus.SKIPPED,
                error="discord.not_linked",
                detail="the student has not linked a Discord account yet; the roles are applied when they do",
                data={"pending_join": True},
            )
        user_id = str(user_id)
        if not _SNOWFLAKE.match(user_id):
            return StepResult.failed("discord.bad_request", f"bad Discord user id {user_id!r}")

        applied: list[str] = []
        for role_id in map(str, role_ids):
            what = f"{verb} role {role_id} {'to' if add else 'from'} member {user_id}"
            params = {"guild_id": self._guild_id, "user_id": user_id, "role_id": role_id}
            route = Route("PUT" if add else "DELETE", _ROLE_ROUTE, params)
            try:
                self._wire.send(route, what, reason=ctx.reason)
            except WireError as exc:
                if not _unknown_member(exc):
                    return exc.result.with_data(role_id=role_id, applied=applied)
                if not add:
                    return StepResult.done(f"member {user_id} is not in the server: roles already gone")
                # Not a failure: the roles stay desired and are applied on join.
                return StepResult(
                    StepStatus.SKIPPED,
                    error="discord.unknown_member",
                    detail=f"user {user_id} is not a member of the server yet; the roles are applied when they join",
                    data={"pending_join": True},
                )
            applied.append(role_id)
        return StepResult.done(f"{verb}: {len(applied)} role(s)", role_ids=applied)

    def _send_dm(self, step: Step, ctx: StepContext) -> StepResult:
        content = step.params.get("content")
        if not isinstance(content, str) or not content.strip():
            return StepResult.failed("discord.bad_request", "send_dm: content must be text")
        user_id = ctx.student.discord_id
        if not user_id:
            return StepResult(
                StepStatus.SKIPPED,
                error="discord.not_linked",
                detail="the student has not linked a Discord account",
            )
        user_id = str(user_id)
        if not _SNOWFLAKE.match(user_id):
            return StepResult.failed("discord.bad_request", f"bad Discord user id {user_id!r}")
        channel_id = self._dm_channels.get(user_id)
        if channel_id is None:
            what = f"open DM with {user_id}"
            try:
                out = self._wire.send(Route("POST", _DM_ROUTE), what, json={"recipient_id": user_id})
            except WireError as exc:
                return exc.result
            body = json_or_none(out)
            channel_id = str(body.get("id", "")) if isinstance(body, dict) else ""
            if not _SNOWFLAKE.match(channel_id):
                return StepResult.failed("discord.unavailable", f"{what}: no channel id in reply", retryable=True)
            with self._lock:
                if len(self._dm_channels) > 10_000:
                    self._dm_channels.clear()
                self._dm_channels[user_id] = channel_id
        # The action run id makes a nonce, so a retried DM is not sent twice.
        nonce = f"dm-{ctx.action_run_id}" if ctx.action_run_id is not None else None
        return self.post_message(channel_id, content, nonce=nonce)


def _unknown_member(exc: WireError) -> bool:
    """Discord's "Unknown Member" (404, code 10007): the user is not in the guild."""
    return exc.response is not None and exc.response.status_code == 404 and error_code(exc.response) == 10007


def _short_nonce(nonce: str) -> str:
    # Discord caps nonces at 25 chars; hash longer ones so they stay unique.
    if len(nonce) <= _MAX_NONCE:
        return nonce
    return "n" + hashlib.sha1(nonce.encode()).hexdigest()[: _MAX_NONCE - 1]
