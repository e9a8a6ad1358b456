"""Discord REST connector: course roles, admin alerts and DMs over plain HTTPS.

The worker is synchronous (Huey), so this uses one ``httpx.Client``; no gateway.
Wire formats, error codes and rate-limit rules follow ``shared/reference/discord.md``.

Rate limits are handled *inside* one call and are not the engine's failure retry:

* per bucket: the ``X-RateLimit-Bucket`` learned for each "METHOD route-template",
  keyed with the major parameter (guild / channel id); when a bucket has no request
  left before its reset, the next request sleeps until ``X-RateLimit-Reset-After``
  (measured on the monotonic clock, so wall-clock skew does not matter);
* globally: ``global_rate`` requests/s, paced by the :class:`Limiter` (in Redis when
  several worker processes share the bot: one budget for all of them, and a global 429
  seen by one pauses all);
* across processes, a bucket's learned quota (limit per reset window) is also paced in
  the shared limiter, so N processes do not each spend the whole window;
* on 429: sleep ``retry_after`` (body, else ``Retry-After``), pause every call of
  this connector when ``global`` is true, then resend (role PUT/DELETE are
  idempotent, messages carry a nonce) up to ``_MAX_429_RETRIES`` times;
* invalid requests (401/403/429 except ``X-RateLimit-Scope: shared``) are counted
  over 10 minutes: Discord bans an IP for a while at 10,000. From
  ``_INVALID_SLOWDOWN_AT`` each request waits ``_INVALID_PACING`` s first; from
  ``_INVALID_REFUSE_AT`` calls are refused (``discord.invalid_request_limit``).

The learned buckets belong to one connector instance, guarded by one lock; the shared
pacing lives in the limiter.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from connectors.base import Step, StepContext, StepResult, StepStatus
from connectors.throttle import Limiter, LocalLimiter

log = logging.getLogger(__name__)

USER_AGENT = "DiscordBot (https://github.com/lifecycle-engine, 0.1)"
_ROLE_ROUTE = "/guilds/{guild_id}/members/{user_id}/roles/{role_id}"
_MEMBER_ROUTE = "/guilds/{guild_id}/members/{user_id}"
_MEMBERS_ROUTE = "/guilds/{guild_id}/members"
_MEMBERS_PAGE = 1000  # List Guild Members' largest page (discord.md 2.4a)
_MESSAGE_ROUTE = "/channels/{channel_id}/messages"
_DM_ROUTE = "/users/@me/channels"
_SNOWFLAKE = re.compile(r"^[0-9]{1,20}$")  # also keeps "../" and friends out of URLs
_MAX_CONTENT = 2000
_MAX_NONCE = 25
_MAX_REASON = 512
_CONFIG_CODES = {10003: "unknown channel", 10004: "unknown guild", 50001: "missing access"}
_DM_CLOSED_CODES = {50007, 50278}
_GLOBAL_KEY = "discord:global"
_HIERARCHY_HINT = (
    "Move the bot's role above the course roles in Server Settings → Roles and make sure it has Manage Roles."
)


class DiscordError(Exception):
    """Raised by :meth:`DiscordConnector.get_member` (a query, not a step) on failure."""

    def __init__(self, result: StepResult):
        super().__init__(f"{result.error}: {result.detail}")
        self.result = result


@dataclass(frozen=True)
class _Route:
    method: str
    template: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.method} {self.template}"

    @property
    def major(self) -> str:
        # Discord keeps separate quotas per top-level resource (guild / channel).
        return self.params.get("guild_id") or self.params.get("channel_id") or ""

    @property
    def path(self) -> str:
        return self.template.format(**self.params)


@dataclass
class _Bucket:
    limit: int | None = None  # None: never saw this bucket's headers
    remaining: int = 0  # requests we may still start in the current window
    reset_at: float | None = None  # monotonic end of the window; None: unknown
    window: float | None = None  # X-RateLimit-Reset (epoch): identifies a window
    pending: int = 0  # requests in flight
    period: float = 0.0  # longest reset-after seen: the window's length

    def expire(self) -> None:
        if self.limit is not None:
            self.remaining = self.limit - self.pending
        self.reset_at = None


class DiscordConnector:
    """Runs ``add_role`` / ``remove_role`` / ``send_dm`` steps against one guild."""

    name = "discord"
    actions = frozenset({"add_role", "remove_role", "send_dm"})

    _MAX_429_RETRIES = 5
    _INVALID_WINDOW = 600.0  # Discord's invalid-request window (10 min)
    _INVALID_SLOWDOWN_AT = 1_000  # Discord bans at 10,000; slow down far before
    _INVALID_REFUSE_AT = 5_000
    _INVALID_PACING = 1.0  # seconds before each request once slowed down
    _MAX_BUCKETS = 1_000  # DM channels each get a bucket: prune idle ones past this

    def __init__(
        self,
        token: str,
        guild_id: str,
        *,
        api_base: str = "https://discord.com/api/v10",
        alert_channel_id: str = "",
        transport: httpx.BaseTransport | None = None,
        timeout: float = 10.0,
        global_rate: float = 50.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        limiter: Limiter | None = None,
    ):
        self._guild_id = str(guild_id)
        self._alert_channel_id = str(alert_channel_id or "")
        self._sleep = sleep
        self._clock = clock
        self._client = httpx.Client(
            base_url=api_base.rstrip("/"),
            transport=transport,
            timeout=timeout,
            headers={"Authorization": f"Bot {token}", "User-Agent": USER_AGENT},
        )
        # burst=1: Discord counts the global limit per second, a full-second burst
        # followed by steady pacing would exceed it.
        self._global_rate = global_rate
        self._limiter = limiter or LocalLimiter(clock)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._route_buckets: dict[str, str] = {}  # "METHOD template" -> X-RateLimit-Bucket
        self._buckets: dict[str, _Bucket] = {}
        self._global_until = 0.0
        self._invalid: deque[float] = deque()
        self._unauthorized: StepResult | None = None
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
        """The guild member object, or None when the user is not in the guild (10007)."""
        user_id = str(user_id)
        what = f"get member {user_id}"
        if not _SNOWFLAKE.match(user_id):
            raise DiscordError(StepResult.failed("discord.bad_request", f"{what}: bad user id"))
        route = _Route("GET", _MEMBER_ROUTE, {"guild_id": self._guild_id, "user_id": user_id})
        out = self._send(route, what)
        if isinstance(out, StepResult):
            raise DiscordError(out)
        if out.is_success:
            body = _json(out)
            if isinstance(body, dict):
                return body
            raise DiscordError(StepResult.failed("discord.unavailable", f"{what}: no JSON body", retryable=True))
        if out.status_code == 404 and _error_code(out) == 10007:
            return None
        raise DiscordError(self._failure(out, what))

    def list_members(self, *, page_size: int = _MEMBERS_PAGE) -> Iterator[dict]:
        """Every member of the guild, by user id (List Guild Members, paged; reconciliation).

        Needs the Server Members intent: without it Discord refuses (403) and this raises
        :class:`DiscordError` with ``discord.intent``. Paced like every other call.
        """
        route = _Route("GET", _MEMBERS_ROUTE, {"guild_id": self._guild_id})
        after = "0"
        while True:
            what = f"list guild members after {after}"
            out = self._send(route, what, params={"limit": page_size, "after": after})
            if isinstance(out, StepResult):
                raise DiscordError(out)
            if out.status_code == 403:
                raise DiscordError(
                    StepResult.failed(
                        "discord.intent",
                        f"{what}: HTTP 403 {_error_message(out)}: turn on the Server Members Intent "
                        "(Developer Portal → Bot) and run engine doctor --discord",
                    )
                )
            if not out.is_success:
                raise DiscordError(self._failure(out, what))
            page = _json(out)
            if not isinstance(page, list):
                raise DiscordError(StepResult.failed("discord.unavailable", f"{what}: no JSON list", retryable=True))
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
        route = _Route("POST", _MESSAGE_ROUTE, {"channel_id": channel_id})
        out = self._send(route, what, json=payload, deduped=bool(nonce))
        if isinstance(out, StepResult):
            return out
        if not out.is_success:
            return self._failure(out, what, deduped=bool(nonce))
        body = _json(out)
        message_id = body.get("id") if isinstance(body, dict) else None
        return StepResult.done(f"posted in channel {channel_id}", message_id=message_id)

    def post_alert(self, content: str, *, nonce: str | None = None) -> StepResult:
        """Post an admin alert in ``alert_channel_id``; skipped when none is configured."""
        if not self._alert_channel_id:
            return StepResult.skipped("no Discord alert channel configured")
        return self.post_message(self._alert_channel_id, content, nonce=nonce)

    def close(self) -> None:
        self._client.close()

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
            route = _Route("PUT" if add else "DELETE", _ROLE_ROUTE, params)
            out = self._send(route, what, reason=ctx.reason)
            if isinstance(out, StepResult):
                return _with_data(out, role_id=role_id, applied=applied)
            if out.is_success:
                applied.append(role_id)
                continue
            if out.status_code == 404 and _error_code(out) == 10007:
                if not add:
                    return StepResult.done(f"member {user_id} is not in the server: roles already gone")
                # Not a failure: the roles stay desired and are applied on join.
                return StepResult(
                    StepStatus.SKIPPED,
                    error="discord.unknown_member",
                    detail=f"user {user_id} is not a member of the server yet; the roles are applied when they join",
                    data={"pending_join": True},
                )
            return _with_data(self._failure(out, what), role_id=role_id, applied=applied)
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
            out = self._send(_Route("POST", _DM_ROUTE), what, json={"recipient_id": user_id})
            if isinstance(out, StepResult):
                return out
            if not out.is_success:
                return self._failure(out, what)
            body = _json(out)
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

    # -- HTTP + rate limits -------------------------------------------------------

    def _send(
        self,
        route: _Route,
        what: str,
        *,
        json: Any = None,
        reason: str | None = None,
        deduped: bool = True,
        params: dict[str, Any] | None = None,
    ) -> httpx.Response | StepResult:
        """One logical request: waits for the limits, resends on 429.

        Returns the response (any status but 401/429) or a failure result.
        ``deduped`` says whether resending after an unknown outcome is harmless.
        """
        if self._unauthorized is not None:
            return self._unauthorized
        headers = {}
        if reason:
            headers["X-Audit-Log-Reason"] = urllib.parse.quote(reason[:_MAX_REASON], safe="")
        for attempt in range(self._MAX_429_RETRIES + 1):
            refused = self._pace_invalid()
            if refused is not None:
                return refused
            bucket = self._acquire(route)
            response: httpx.Response | None = None
            try:
                self._pace_shared_route(route, bucket)
                self._wait_global()
                self._pace(self._limiter.reserve(_GLOBAL_KEY, self._global_rate, 1.0))
                response = self._client.request(route.method, route.path, json=json, headers=headers, params=params)
            except httpx.HTTPError as exc:
                return _transport_failure(exc, what, deduped=deduped)
            finally:
                self._release(bucket, route, response)

            status = response.status_code
            if status in (401, 403, 429) and response.headers.get("x-ratelimit-scope") != "shared":
                self._count_invalid()
            if status == 401:
                # The token is invalid: every further call would be another invalid request.
                result = StepResult.failed(
                    "discord.unauthorized",
                    "Discord rejected the bot token (401); fix DISCORD_BOT_TOKEN and restart",
                )
                with self._lock:
                    self._unauthorized = result
                log.error("discord: 401 on %s; refusing further calls", route.key)
                return result
            if status != 429:
                return response

            retry_after = _retry_after(response)
            if retry_after is None:
                # No JSON body: not Discord's limiter but Cloudflare blocking this IP.
                log.error("discord: non-JSON 429 on %s (Cloudflare block?)", route.key)
                return StepResult.failed(
                    "discord.unavailable",
                    f"{what}: 429 without JSON body (Cloudflare block of this IP?)",
                    retryable=True,
                )
            is_global = _is_global(response)
            self._note_429(route, retry_after, is_global)
            log.warning("discord: 429 on %s (global=%s), retry in %.3fs", route.key, is_global, retry_after)
            if attempt == self._MAX_429_RETRIES:
                break
            self._sleep(retry_after)
        return StepResult.failed(
            "discord.rate_limited",
            f"{what}: still rate limited after {self._MAX_429_RETRIES} retries",
            retryable=True,
        )

    def _pace(self, wait: float) -> None:
        if wait > 0:
            self._sleep(wait)

    def _shared_key(self, route: _Route) -> str:
        return f"discord:bucket:{self._route_buckets.get(route.key, route.key)}:{route.major}"

    def _pace_shared_route(self, route: _Route, bucket: _Bucket) -> None:
        # Other processes spend the same bucket: pace at its learned quota across all of them.
        if self._limiter.shared and bucket.limit and bucket.period > 0:
            self._pace(self._limiter.reserve(self._shared_key(route), bucket.limit / bucket.period, 1.0))

    def _bucket_for(self, route: _Route) -> _Bucket:
        # Until Discord told us the route's bucket, key by the route itself.
        name = self._route_buckets.get(route.key, route.key)
        key = f"{name}:{route.major}"
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._MAX_BUCKETS:
                self._prune_buckets()
            bucket = self._buckets[key] = _Bucket()
        return bucket

    def _prune_buckets(self) -> None:
        now = self._clock()
        for key, b in list(self._buckets.items()):
            if b.pending == 0 and (b.reset_at is None or b.reset_at <= now):
                del self._buckets[key]

    def _acquire(self, route: _Route) -> _Bucket:
        """Reserve a request in the route's bucket, sleeping until its reset if needed."""
        while True:
            with self._cond:
                bucket = self._bucket_for(route)
                now = self._clock()
                if bucket.reset_at is not None and now >= bucket.reset_at:
                    bucket.expire()
                if bucket.limit is None or (bucket.reset_at is None and bucket.remaining <= 0):
                    # Limits unknown: one request at a time until a response tells them,
                    # so a burst of threads cannot all hit a fresh bucket's 429.
                    if bucket.pending == 0:
                        bucket.pending += 1
                        bucket.remaining -= 1
                        return bucket
                    self._cond.wait(timeout=1.0)
                    continue
                if bucket.remaining > 0:
                    bucket.remaining -= 1
                    bucket.pending += 1
                    return bucket
                target = bucket.reset_at
                wait = target - now
            log.debug("discord: bucket %s exhausted, waiting %.3fs", route.key, wait)
            self._sleep(wait)
            with self._cond:
                if bucket.reset_at == target:
                    bucket.expire()  # do not trust a clock that a test's sleep did not move

    def _release(self, reserved: _Bucket, route: _Route, response: httpx.Response | None) -> None:
        with self._cond:
            reserved.pending -= 1
            if response is not None:
                self._update_bucket(route, response)
            self._cond.notify_all()

    def _update_bucket(self, route: _Route, response: httpx.Response) -> None:
        """Fold a response's X-RateLimit-* headers into the bucket (lock held)."""
        h = response.headers
        bucket_id = h.get("x-ratelimit-bucket")
        if bucket_id:
            self._route_buckets[route.key] = bucket_id
        bucket = self._bucket_for(route)
        try:
            limit = int(h["x-ratelimit-limit"])
            remaining = int(h["x-ratelimit-remaining"])
            reset_after = float(h["x-ratelimit-reset-after"])
        except (KeyError, ValueError):
            return
        try:
            window: float | None = float(h["x-ratelimit-reset"])
        except (KeyError, ValueError):
            window = None
        reset_at = self._clock() + reset_after
        bucket.period = max(bucket.period, reset_after)
        if bucket.limit is not None and window is not None and bucket.window is not None:
            if window < bucket.window - 1e-3:
                return  # a late answer from an earlier window
            if abs(window - bucket.window) <= 1e-3:
                if bucket.reset_at is None:
                    return  # a late answer from the window we already saw end
                bucket.remaining = min(bucket.remaining, remaining)
                return
        # A new window. Requests still in flight may land in it: count them as spent.
        fresh = remaining - bucket.pending
        if bucket.limit is not None and bucket.reset_at is None:
            fresh = min(fresh, bucket.remaining)  # we already handed out this window's quota
        bucket.limit = limit
        bucket.remaining = max(fresh, 0)
        bucket.reset_at = reset_at
        bucket.window = window

    def _note_429(self, route: _Route, retry_after: float, is_global: bool) -> None:
        with self._cond:
            until = self._clock() + retry_after
            if is_global:
                self._global_until = max(self._global_until, until)
                if self._limiter.shared:
                    self._limiter.block(_GLOBAL_KEY, retry_after)  # every process pauses
            else:
                if self._limiter.shared:
                    self._limiter.block(self._shared_key(route), retry_after)
                bucket = self._bucket_for(route)
                bucket.remaining = 0
                bucket.reset_at = max(bucket.reset_at or 0.0, until)

    def _wait_global(self) -> None:
        with self._lock:
            wait = self._global_until - self._clock()
        if wait > 0:
            self._sleep(wait)

    def _count_invalid(self) -> None:
        with self._lock:
            self._invalid.append(self._clock())

    def _pace_invalid(self) -> StepResult | None:
        with self._lock:
            horizon = self._clock() - self._INVALID_WINDOW
            while self._invalid and self._invalid[0] < horizon:
                self._invalid.popleft()
            count = len(self._invalid)
        if count >= self._INVALID_REFUSE_AT:
            return StepResult.failed(
                "discord.invalid_request_limit",
                f"{count} invalid Discord requests (401/403/429) in 10 minutes; "
                "pausing calls before Discord bans this IP",
                retryable=True,
            )
        if count >= self._INVALID_SLOWDOWN_AT:
            self._sleep(self._INVALID_PACING)
        return None

    # -- outcomes -----------------------------------------------------------------

    def _failure(self, response: httpx.Response, what: str, *, deduped: bool = True) -> StepResult:
        """Name a non-2xx response (not 401/429, handled in ``_send``)."""
        status = response.status_code
        code = _error_code(response)
        text = f"{what}: HTTP {status} {_error_message(response)}"
        if code is not None:
            text += f" (code {code})"
        if status >= 500:
            return StepResult.failed("discord.unavailable", text, retryable=True, maybe_delivered=not deduped)
        if code == 50013:
            hint = _HIERARCHY_HINT if "role" in what else "Give the bot View Channel and Send Messages there."
            return StepResult.failed("discord.forbidden", f"{text}. {hint}")
        if code == 10011:
            return StepResult.failed("discord.unknown_role", f"{text}: check the role ids in rules/ against the server")
        if code in _CONFIG_CODES:
            return StepResult.failed("discord.config", f"{text}: {_CONFIG_CODES[code]}; check the Discord settings")
        if code in _DM_CLOSED_CODES:
            return StepResult.failed("discord.dm_closed", f"{text}: the user does not accept DMs")
        if status == 403:
            return StepResult.failed("discord.forbidden", text)
        return StepResult.failed("discord.bad_request", text)


# -- helpers ----------------------------------------------------------------------


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _error_code(response: httpx.Response) -> int | None:
    body = _json(response)
    code = body.get("code") if isinstance(body, dict) else None
    return code if isinstance(code, int) else None


def _error_message(response: httpx.Response) -> str:
    body = _json(response)
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"][:200]
    return response.reason_phrase or "(no JSON body)"


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds to wait from a Discord 429, or None when it is not Discord's JSON."""
    body = _json(response)
    if not isinstance(body, dict):
        return None
    for value in (body.get("retry_after"), response.headers.get("retry-after")):
        try:
            if value is not None:
                return max(float(value), 0.0)
        except ValueError:
            continue
    return None


def _is_global(response: httpx.Response) -> bool:
    body = _json(response)
    if isinstance(body, dict) and body.get("global") is True:
        return True
    return response.headers.get("x-ratelimit-global", "").lower() == "true"


def _short_nonce(nonce: str) -> str:
    # Discord caps nonces at 25 chars; hash longer ones so they stay unique.
    if len(nonce) <= _MAX_NONCE:
        return nonce
    return "n" + hashlib.sha1(nonce.encode()).hexdigest()[: _MAX_NONCE - 1]


def _transport_failure(exc: httpx.HTTPError, what: str, *, deduped: bool) -> StepResult:
    # A connect error or pool timeout never reached Discord; anything later might have.
    reached = not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    kind = "timeout" if isinstance(exc, httpx.TimeoutException) else "connection error"
    return StepResult.failed(
        "discord.unavailable",
        f"{what}: {kind} ({type(exc).__name__})",
        retryable=True,
        maybe_delivered=reached and not deduped,
    )


def _with_data(result: StepResult, **data: Any) -> StepResult:
    return StepResult(
        result.status,
        error=result.error,
        detail=result.detail,
        retryable=result.retryable,
        maybe_delivered=result.maybe_delivered,
        data={**result.data, **data},
    )
