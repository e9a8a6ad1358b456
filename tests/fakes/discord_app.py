"""A fake Discord REST API (ASGI) for tests, local runs and ``bench/discord_roles.py``.

Wire formats, error codes and rate-limit headers follow
``shared/reference/discord.md`` (sections 1-3): ``Authorization: Bot <token>``,
error bodies ``{"message", "code"}``, 204 on role PUT/DELETE, message ``nonce`` +
``enforce_nonce`` dedupe, ``X-RateLimit-*`` headers on every rate-limited route and
429s with both ``Retry-After`` and ``retry_after``.

Rate limits: each bucket (route group + major parameter; both role routes of one
guild share one bucket, as on Discord) is a fixed window of ``route_limit``
requests per ``route_window`` seconds, opened by the first request after the last
window ended. On top, a global fixed window of ``global_limit`` requests per second.

Tests reach the state in-process through ``app.state.fake`` (a :class:`FakeDiscord`);
anything else uses the control endpoints (no auth, not under ``/api/v10``):

* ``POST /_fake/members`` ``{"user_id", "roles": [...], "dms_closed": false}``
* ``PUT /_fake/members/{user_id}/roles`` ``{"roles": [...]}``; ``DELETE /_fake/members/{user_id}``
* ``POST /_fake/roles`` ``{"role_id", "name", "position", "managed", "above_bot"}``
* ``POST /_fake/channels`` ``{"channel_id"}``
* ``POST /_fake/setup`` ``{"application_flags": 0, "bot_in_guild": false, "bot_permissions": "0",
  "channel_overwrites": {"<channel id>": [{"id", "type", "allow", "deny"}]}}`` (preflight cases)
* ``POST /_fake/failures`` ``{"status": 500|503|403|429, "code": 50013, "times": N,
  "path_contains": "...", "method": "PUT", "body": "<raw text instead of JSON>"}``
* ``POST /_fake/timeouts`` ``{"seconds": 2.0, "times": N, "path_contains": "..."}``
  (the request is handled, then answered only after ``seconds``)
* ``GET /_fake/state``; ``POST /_fake/reset``
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

GUILD_ID = "1180000000000000000"
COURSE_ROLE_ID = "1180000000000000001"
BOT_ROLE_ID = "1180000000000000009"
BOT_USER_ID = "1190000000000000000"
ALERT_CHANNEL_ID = "1180000000000000500"
APPLICATION_ID = "1190000000000000001"
# MANAGE_ROLES | VIEW_CHANNEL | SEND_MESSAGES: the invite's permissions (discord.md section 4).
BOT_PERMISSIONS = str((1 << 28) | (1 << 10) | (1 << 11))
GATEWAY_GUILD_MEMBERS_LIMITED = 1 << 15
NONCE_TTL = 300.0  # "within a few minutes"

ERROR_MESSAGES = {
    0: "General error",
    10003: "Unknown Channel",
    10004: "Unknown Guild",
    10007: "Unknown Member",
    10011: "Unknown Role",
    10013: "Unknown User",
    50001: "Missing Access",
    50006: "Cannot send an empty message",
    50007: "Cannot send messages to this user",
    50013: "Missing Permissions",
    50035: "Invalid Form Body",
    50278: "Cannot send messages to this user due to having no mutual guilds",
}


def _bucket_hash(group: str) -> str:
    # Opaque like Discord's; stable so tests can name a bucket.
    return hashlib.sha1(f"fake-discord:{group}".encode()).hexdigest()[:32]


@dataclass
class _Window:
    """One fixed rate-limit window."""

    start: float = -math.inf
    count: int = 0
    reset_epoch: float = 0.0
    index: int = 0

    def take(self, limit: int, length: float, now: float) -> tuple[bool, int, float]:
        """Count a request; returns (allowed, remaining, reset_after)."""
        if now >= self.start + length:
            self.start, self.count, self.index = now, 0, self.index + 1
            self.reset_epoch = round(time.time() + length, 3)
        reset_after = max(self.start + length - now, 0.0)
        if self.count >= limit:
            return False, 0, reset_after
        self.count += 1
        return True, limit - self.count, reset_after


@dataclass
class FakeDiscord:
    """The whole fake guild; tests seed and inspect it directly."""

    guild_id: str = GUILD_ID
    token: str = "test-token"
    route_limit: int = 10
    route_window: float = 10.0
    global_limit: int = 50
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.members: dict[str, set[str]] = {}
        self.dms_closed: set[str] = set()
        self.roles: dict[str, dict[str, Any]] = {}
        self.channels: set[str] = {ALERT_CHANNEL_ID}
        self.messages: dict[str, list[dict[str, Any]]] = {}  # channel id -> messages
        self.dm_channels: dict[str, str] = {}  # user id -> DM channel id
        self.failures: list[dict[str, Any]] = []
        self.delays: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []  # API requests past auth and limits
        self.requests_total = 0  # every API request, refused ones included
        self.rate_limited = 0  # 429s served (route and global)
        self.rate_limited_global = 0
        self.rate_limited_by_bucket: dict[str, int] = {}  # "bucket:major" or "global"
        self.rate_limited_by_window: dict[str, int] = {}  # "bucket:major#window"
        self.invalid_requests = 0  # 401/403/429 as Discord counts them
        self._windows: dict[str, _Window] = {}
        self._global = _Window()
        self._ids = itertools.count(1190000000000000700)
        # The bot's own side (GET /users/@me, /applications/@me, its member and role).
        self.application_flags = GATEWAY_GUILD_MEMBERS_LIMITED
        self.bot_in_guild = True
        self.channel_overwrites: dict[str, list[dict[str, Any]]] = {}
        self.add_role(self.guild_id, "@everyone", position=0)
        self.add_role(COURSE_ROLE_ID, "Aluno Python Pro", position=3)
        self.add_role(BOT_ROLE_ID, "EngineBot", position=5, managed=True, permissions=BOT_PERMISSIONS)

    # ------------------------------------------------------------- seeding

    def add_member(self, user_id: str, roles: tuple[str, ...] | list[str] = ()) -> None:
        self.members[str(user_id)] = {str(r) for r in roles}

    def set_member_roles(self, user_id: str, roles: tuple[str, ...] | list[str]) -> None:
        self.members[str(user_id)] = {str(r) for r in roles}

    def remove_member(self, user_id: str) -> None:
        self.members.pop(str(user_id), None)

    def add_role(
        self,
        role_id: str,
        name: str | None = None,
        *,
        position: int = 1,
        managed: bool = False,
        above_bot: bool = False,
        permissions: str = "0",
    ) -> None:
        """``above_bot``: placed above the bot's role, so granting it gives 403/50013."""
        self.roles[str(role_id)] = {
            "id": str(role_id),
            "name": name or f"role-{role_id}",
            "position": position,
            "managed": managed,
            "above_bot": above_bot,
            "permissions": permissions,
        }

    def add_channel(self, channel_id: str) -> None:
        self.channels.add(str(channel_id))

    def queue_failure(
        self,
        status: int,
        code: int | None = None,
        *,
        times: int = 1,
        path_contains: str = "",
        method: str | None = None,
        body: str | None = None,
    ) -> None:
        """The next ``times`` matching requests get ``status`` (after rate limiting)."""
        self.failures.append(
            {
                "status": int(status),
                "code": code,
                "times": int(times),
                "path_contains": path_contains,
                "method": method.upper() if method else None,
                "body": body,
            }
        )

    def stall(self, seconds: float, *, times: int = 1, path_contains: str = "") -> None:
        """Answer the next ``times`` matching requests only after ``seconds``."""
        self.delays.append({"seconds": seconds, "times": int(times), "path_contains": path_contains})

    # ------------------------------------------------------------- queries

    def member_roles(self, user_id: str) -> set[str] | None:
        roles = self.members.get(str(user_id))
        return None if roles is None else set(roles)

    def dms_to(self, user_id: str) -> list[str]:
        channel = self.dm_channels.get(str(user_id))
        return [m["content"] for m in self.messages.get(channel, [])] if channel else []

    def max_429_per_window(self) -> int:
        return max(self.rate_limited_by_window.values(), default=0)

    def snapshot(self) -> dict[str, Any]:
        return {
            "members": {uid: sorted(roles) for uid, roles in self.members.items()},
            "roles": list(self.roles.values()),
            "channels": sorted(self.channels),
            "messages": self.messages,
            "dm_channels": self.dm_channels,
            "requests_total": self.requests_total,
            "requests": len(self.requests),
            "rate_limited": self.rate_limited,
            "rate_limited_global": self.rate_limited_global,
            "rate_limited_by_bucket": self.rate_limited_by_bucket,
            "rate_limited_by_window": self.rate_limited_by_window,
            "invalid_requests": self.invalid_requests,
        }

    # ----------------------------------------------------- request guards

    def take_global(self) -> float | None:
        """None if allowed, else seconds until the global window resets."""
        ok, _, reset_after = self._global.take(self.global_limit, 1.0, self.clock())
        if ok:
            return None
        self._count_429("global", f"global#{self._global.index}")
        self.rate_limited_global += 1
        return reset_after

    def take_route(self, bucket: str) -> tuple[bool, dict[str, str]]:
        window = self._windows.setdefault(bucket, _Window())
        ok, remaining, reset_after = window.take(self.route_limit, self.route_window, self.clock())
        headers = {
            "X-RateLimit-Limit": str(self.route_limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": f"{window.reset_epoch:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": bucket.split(":")[0],
        }
        if not ok:
            self._count_429(bucket, f"{bucket}#{window.index}")
        return ok, headers

    def _count_429(self, bucket: str, window: str) -> None:
        self.rate_limited += 1
        self.rate_limited_by_bucket[bucket] = self.rate_limited_by_bucket.get(bucket, 0) + 1
        self.rate_limited_by_window[window] = self.rate_limited_by_window.get(window, 0) + 1

    def take_failure(self, method: str, path: str) -> dict[str, Any] | None:
        for failure in self.failures:
            if failure["times"] > 0 and failure["path_contains"] in path and failure["method"] in (None, method):
                failure["times"] -= 1
                return failure
        return None

    def take_delay(self, path: str) -> float:
        for delay in self.delays:
            if delay["times"] > 0 and delay["path_contains"] in path:
                delay["times"] -= 1
                return float(delay["seconds"])
        return 0.0

    def next_id(self) -> str:
        return str(next(self._ids))


# ---------------------------------------------------------------- responses


def _error(code: int, status: int, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"message": ERROR_MESSAGES.get(code, "General error"), "code": code}
    return JSONResponse(body, status_code=status, headers=headers)


def _too_many(retry_after: float, *, is_global: bool, headers: dict[str, str]) -> JSONResponse:
    retry_after = round(max(retry_after, 0.001), 3)
    body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": is_global}
    headers = {**headers, "Retry-After": str(math.ceil(retry_after))}
    headers["X-RateLimit-Scope"] = "global" if is_global else "user"
    if is_global:
        headers["X-RateLimit-Global"] = "true"
    return JSONResponse(body, status_code=429, headers=headers)


def _failure_response(failure: dict[str, Any], headers: dict[str, str]) -> Response:
    status, code = failure["status"], failure["code"]
    if failure["body"] is not None:  # e.g. a Cloudflare HTML page
        return Response(failure["body"], status, headers=headers, media_type="text/html")
    if status == 429:
        return _too_many(1.0, is_global=False, headers=headers)
    if code is None and status >= 500:  # a bare 5xx, no JSON
        return Response(f"{status}: Server Error", status, headers=headers, media_type="text/plain")
    return _error(code or 0, status, headers)


def _json_body(raw: bytes) -> dict[str, Any] | None:
    try:
        body = json.loads(raw or b"null")
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


# ------------------------------------------------------------- API routes

_API: list[tuple[set[str], re.Pattern[str], str, str]] = [
    # (methods, path, handler name, bucket group); the major parameter is group "major"
    (
        {"PUT", "DELETE"},
        re.compile(r"^/guilds/(?P<major>\d+)/members/(?P<user>\d+)/roles/(?P<role>\d+)$"),
        "member_role",
        "member_role",
    ),
    ({"GET"}, re.compile(r"^/guilds/(?P<major>\d+)/members/(?P<user>\d+)$"), "member", "member"),
    ({"GET"}, re.compile(r"^/guilds/(?P<major>\d+)/members$"), "members", "members"),
    ({"GET"}, re.compile(r"^/guilds/(?P<major>\d+)/roles$"), "roles", "roles"),
    ({"GET"}, re.compile(r"^/users/@me$"), "current_user", "current_user"),
    ({"GET"}, re.compile(r"^/applications/@me$"), "current_application", "current_application"),
    ({"GET"}, re.compile(r"^/channels/(?P<major>\d+)$"), "channel", "channel"),
    ({"POST"}, re.compile(r"^/channels/(?P<major>\d+)/messages$"), "message", "message"),
    ({"POST"}, re.compile(r"^/users/@me/channels$"), "create_dm", "create_dm"),
]


def create_app(
    *,
    guild_id: str = GUILD_ID,
    route_limit: int = 10,
    route_window: float = 10.0,
    global_limit: int = 50,
    token: str = "test-token",
) -> Starlette:
    fake = FakeDiscord(
        guild_id=guild_id,
        token=token,
        route_limit=route_limit,
        route_window=route_window,
        global_limit=global_limit,
    )

    def member_object(user_id: str) -> dict[str, Any]:
        return member_object_of(user_id, fake.members[user_id])

    def member_object_of(user_id: str, roles: set[str]) -> dict[str, Any]:
        return {
            "user": {
                "id": user_id,
                "username": f"user{user_id[-4:]}",
                "discriminator": "0",
                "global_name": None,
                "avatar": None,
            },
            "nick": None,
            "avatar": None,
            "roles": sorted(roles),
            "joined_at": "2026-01-10T12:00:00.000000+00:00",
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": None,
        }

    # Each handler runs under fake.lock, after auth and rate limits.

    def member_role(method: str, m: dict[str, str], body: Any) -> Response:
        if m["major"] != fake.guild_id:
            return _error(10004, 404)
        held = fake.members.get(m["user"])
        if held is None:
            return _error(10007, 404)
        role = fake.roles.get(m["role"])
        if role is None:
            return _error(10011, 404)
        if role["managed"] or role["above_bot"]:
            return _error(50013, 403)  # hierarchy / integration-managed role
        if method == "PUT":
            held.add(m["role"])
        else:
            held.discard(m["role"])
        return Response(status_code=204)

    def member(method: str, m: dict[str, str], body: Any) -> Response:
        if m["major"] != fake.guild_id:
            return _error(10004, 404)
        if m["user"] == BOT_USER_ID and fake.bot_in_guild and BOT_USER_ID not in fake.members:
            return JSONResponse({**member_object_of(BOT_USER_ID, {BOT_ROLE_ID}), "user": bot_user()})
        if m["user"] not in fake.members:
            return _error(10007, 404)
        return JSONResponse(member_object(m["user"]))

    def members(method: str, m: dict[str, str], query: dict[str, str]) -> Response:
        """List Guild Members: ordered by user id, ``limit`` 1-1000 (default 1), ``after`` a user id."""
        if m["major"] != fake.guild_id:
            return _error(10004, 404)
        if not fake.application_flags & (GATEWAY_GUILD_MEMBERS_LIMITED | (1 << 14)):
            return _error(50001, 403)  # the privileged intent is off
        try:
            limit, after = int(query.get("limit", "1")), int(query.get("after", "0"))
        except ValueError:
            return _error(50035, 400)
        if not 1 <= limit <= 1000:
            return _error(50035, 400)
        ids = sorted((uid for uid in fake.members if int(uid) > after), key=int)[:limit]
        return JSONResponse([member_object(uid) for uid in ids])

    def bot_user() -> dict[str, Any]:
        return {"id": BOT_USER_ID, "username": "EngineBot", "discriminator": "0", "bot": True, "avatar": None}

    def current_user(method: str, m: dict[str, str], body: Any) -> Response:
        return JSONResponse(bot_user())

    def current_application(method: str, m: dict[str, str], body: Any) -> Response:
        return JSONResponse(
            {"id": APPLICATION_ID, "name": "EngineBot", "bot": bot_user(), "flags": fake.application_flags}
        )

    def channel(method: str, m: dict[str, str], body: Any) -> Response:
        if m["major"] not in fake.channels:
            return _error(10003, 404)
        return JSONResponse(
            {
                "id": m["major"],
                "type": 0,
                "guild_id": fake.guild_id,
                "name": "alertas-engine",
                "permission_overwrites": fake.channel_overwrites.get(m["major"], []),
            }
        )

    def roles(method: str, m: dict[str, str], body: Any) -> Response:
        if m["major"] != fake.guild_id:
            return _error(10004, 404)
        wire = []
        bot_position = fake.roles.get(BOT_ROLE_ID, {}).get("position", 0)
        for role in fake.roles.values():
            item = {k: v for k, v in role.items() if k != "above_bot"}
            if role["above_bot"]:
                item["position"] = max(role["position"], bot_position + 1)
            item.update(hoist=False, mentionable=False, color=0, flags=0)
            if role["id"] == BOT_ROLE_ID:
                item["tags"] = {"bot_id": BOT_USER_ID}
            wire.append(item)
        return JSONResponse(wire)

    def message(method: str, m: dict[str, str], body: Any) -> Response:
        channel = m["major"]
        dm_user = next((u for u, c in fake.dm_channels.items() if c == channel), None)
        if channel not in fake.channels and dm_user is None:
            return _error(10003, 404)
        if body is None:
            return _error(50035, 400)
        content = body.get("content")
        if not content:
            return _error(50006, 400)
        nonce = body.get("nonce")
        if not isinstance(content, str) or len(content) > 2000:
            return _error(50035, 400)
        if nonce is not None and len(str(nonce)) > 25:
            return _error(50035, 400)
        if dm_user is not None:
            if dm_user in fake.dms_closed:
                return _error(50007, 403)
            if dm_user not in fake.members:
                return _error(50278, 403)
        posted = fake.messages.setdefault(channel, [])
        now = fake.clock()
        if nonce is not None and body.get("enforce_nonce"):
            for old in posted:
                if old["nonce"] == nonce and now - old["_at"] < NONCE_TTL:
                    return JSONResponse({k: v for k, v in old.items() if k != "_at"})
        msg = {
            "id": fake.next_id(),
            "channel_id": channel,
            "type": 0,
            "content": content,
            "author": {"id": BOT_USER_ID, "username": "EngineBot", "bot": True},
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000000+00:00", time.gmtime()),
            "mentions": [],
            "embeds": [],
            "nonce": nonce,
            "allowed_mentions": body.get("allowed_mentions"),
            "_at": now,
        }
        posted.append(msg)
        return JSONResponse({k: v for k, v in msg.items() if k != "_at"})

    def create_dm(method: str, m: dict[str, str], body: Any) -> Response:
        recipient = str((body or {}).get("recipient_id", ""))
        if not recipient.isdigit():
            return _error(50035, 400)
        channel = fake.dm_channels.setdefault(recipient, fake.next_id())
        return JSONResponse(
            {
                "id": channel,
                "type": 1,
                "last_message_id": None,
                "flags": 0,
                "recipients": [
                    {"id": recipient, "username": f"user{recipient[-4:]}", "global_name": None, "discriminator": "0"}
                ],
            }
        )

    handlers = {
        "member_role": member_role,
        "member": member,
        "roles": roles,
        "message": message,
        "create_dm": create_dm,
        "members": members,
        "current_user": current_user,
        "current_application": current_application,
        "channel": channel,
    }

    async def api(request: Request) -> Response:
        path = "/" + request.path_params["path"]
        method = request.method
        match = None
        for methods, pattern, name, group in _API:
            found = pattern.match(path)
            if found:
                match = (methods, found, name, group)
                if method in methods:
                    break
        if match is None:
            return JSONResponse({"message": "404: Not Found", "code": 0}, status_code=404)
        methods, found, name, group = match
        if method not in methods:
            return JSONResponse({"message": "405: Method Not Allowed", "code": 0}, 405)
        raw = await request.body()
        params = found.groupdict()
        with fake.lock:
            fake.requests_total += 1
            if request.headers.get("authorization") != f"Bot {fake.token}":
                fake.invalid_requests += 1
                return JSONResponse({"message": "401: Unauthorized", "code": 0}, 401)
            global_wait = fake.take_global()
            if global_wait is not None:
                fake.invalid_requests += 1
                return _too_many(global_wait, is_global=True, headers={})
            bucket = f"{_bucket_hash(group)}:{params.get('major', '')}"
            ok, headers = fake.take_route(bucket)
            if not ok:
                fake.invalid_requests += 1
                retry_after = float(headers["X-RateLimit-Reset-After"])
                return _too_many(retry_after, is_global=False, headers=headers)
            fake.requests.append(
                {
                    "method": method,
                    "path": path,
                    "audit_reason": request.headers.get("x-audit-log-reason"),
                    "at": fake.clock(),
                }
            )
            delay = fake.take_delay(path)
            failure = fake.take_failure(method, path)
            if failure is not None:
                response = _failure_response(failure, headers)
            else:
                argument = dict(request.query_params) if name == "members" else _json_body(raw)
                response = handlers[name](method, params, argument)
                response.headers.update(headers)
            if response.status_code in (401, 403, 429):
                fake.invalid_requests += 1
        if delay:
            await asyncio.sleep(delay)
        return response

    # ------------------------------------------------------- control plane

    async def body_of(request: Request) -> dict[str, Any]:
        return _json_body(await request.body()) or {}

    async def control(request: Request) -> Response:
        what = request.path_params["what"]
        if request.method == "GET" and what == "state":
            with fake.lock:
                return JSONResponse(json.loads(json.dumps(fake.snapshot(), default=list)))
        body = await body_of(request)
        with fake.lock:
            if what == "reset":
                fake.reset()
            elif what == "members":
                fake.add_member(body["user_id"], body.get("roles", []))
                if body.get("dms_closed"):
                    fake.dms_closed.add(str(body["user_id"]))
            elif what == "roles":
                fake.add_role(
                    body["role_id"],
                    body.get("name"),
                    position=int(body.get("position", 1)),
                    managed=bool(body.get("managed", False)),
                    above_bot=bool(body.get("above_bot", False)),
                )
            elif what == "channels":
                fake.add_channel(body["channel_id"])
            elif what == "setup":
                if "application_flags" in body:
                    fake.application_flags = int(body["application_flags"])
                if "bot_in_guild" in body:
                    fake.bot_in_guild = bool(body["bot_in_guild"])
                if "bot_permissions" in body:
                    fake.roles[BOT_ROLE_ID]["permissions"] = str(body["bot_permissions"])
                fake.channel_overwrites.update(body.get("channel_overwrites") or {})
            elif what == "failures":
                fake.queue_failure(
                    int(body["status"]),
                    body.get("code"),
                    times=int(body.get("times", 1)),
                    path_contains=body.get("path_contains", ""),
                    method=body.get("method"),
                    body=body.get("body"),
                )
            elif what == "timeouts":
                fake.stall(
                    float(body.get("seconds", 30.0)),
                    times=int(body.get("times", 1)),
                    path_contains=body.get("path_contains", ""),
                )
            else:
                return JSONResponse({"error": f"unknown control {what!r}"}, 404)
        return JSONResponse({"ok": True})

    async def member_control(request: Request) -> Response:
        user_id = request.path_params["user_id"]
        body = await body_of(request)
        with fake.lock:
            if request.method == "DELETE":
                fake.remove_member(user_id)
            else:
                fake.set_member_roles(user_id, body.get("roles", []))
        return JSONResponse({"ok": True})

    app = Starlette(
        routes=[
            Route("/_fake/members/{user_id}/roles", member_control, methods=["PUT"]),
            Route("/_fake/members/{user_id}", member_control, methods=["DELETE"]),
            Route("/_fake/{what}", control, methods=["GET", "POST"]),
            Route("/api/v10/{path:path}", api, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
        ]
    )
    app.state.fake = fake
    return app
