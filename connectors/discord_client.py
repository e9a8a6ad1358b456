"""Discord REST wire client: routes, rate-limit buckets and 429s.

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

A call returns the 2xx response or raises a :class:`~connectors.errors.WireError`
(named by :mod:`connectors.discord_failures`). The learned buckets belong to one client
instance, guarded by one lock; the shared pacing lives in the limiter.
:mod:`connectors.discord` maps steps onto this client.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from connectors._http import tls_context
from connectors.discord_failures import failure, is_global, retry_after, transport_failure
from connectors.errors import RateLimited, Unauthorized, Unavailable
from connectors.throttle import Limiter, LocalLimiter

log = logging.getLogger("connectors.discord")  # the name operators already filter on

USER_AGENT = "DiscordBot (https://github.com/lifecycle-engine, 0.1)"
_MAX_REASON = 512
_GLOBAL_KEY = "discord:global"
_UNAUTHORIZED = "Discord rejected the bot token (401); fix DISCORD_BOT_TOKEN and restart"


@dataclass(frozen=True)
class Route:
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


class DiscordClient:
    """Sends Discord REST requests within every rate limit and names what went wrong."""

    _MAX_429_RETRIES = 5
    _INVALID_WINDOW = 600.0  # Discord's invalid-request window (10 min)
    _INVALID_SLOWDOWN_AT = 1_000  # Discord bans at 10,000; slow down far before
    _INVALID_REFUSE_AT = 5_000
    _INVALID_PACING = 1.0  # seconds before each request once slowed down
    _MAX_BUCKETS = 1_000  # DM channels each get a bucket: prune idle ones past this

    def __init__(
        self,
        token: str,
        *,
        api_base: str = "https://discord.com/api/v10",
        transport: httpx.BaseTransport | None = None,
        timeout: float = 10.0,
        global_rate: float = 50.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        limiter: Limiter | None = None,
        wrap_transport: Callable[[httpx.BaseTransport], httpx.BaseTransport] | None = None,
    ):
        """``transport``: a test double instead of the network; ``wrap_transport``: a layer around
        either (the service counts calls with it)."""
        self._sleep = sleep
        self._clock = clock
        transport = transport or httpx.HTTPTransport(verify=tls_context())
        self._client = httpx.Client(
            base_url=api_base.rstrip("/"),
            transport=wrap_transport(transport) if wrap_transport else transport,
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
        self._unauthorized = False  # a 401 seen: every further call would be another invalid request

    def close(self) -> None:
        self._client.close()

    # -- HTTP + rate limits -------------------------------------------------------

    def send(
        self,
        route: Route,
        what: str,
        *,
        json: Any = None,
        reason: str | None = None,
        deduped: bool = True,
        params: dict[str, Any] | None = None,
    ) -> httpx.Response:
        """One logical request: waits for the limits, resends on 429.

        Returns the 2xx response or raises a :class:`~connectors.errors.WireError` naming the
        failure. ``deduped`` says whether resending after an unknown outcome is harmless.
        """
        if self._unauthorized:
            raise Unauthorized("discord.unauthorized", _UNAUTHORIZED)
        headers = {}
        if reason:
            headers["X-Audit-Log-Reason"] = urllib.parse.quote(reason[:_MAX_REASON], safe="")
        for attempt in range(self._MAX_429_RETRIES + 1):
            self._pace_invalid()
            bucket = self._acquire(route)
            response: httpx.Response | None = None
            try:
                self._pace_shared_route(route, bucket)
                self._wait_global()
                self._pace(self._limiter.reserve(_GLOBAL_KEY, self._global_rate, 1.0))
                response = self._client.request(route.method, route.path, json=json, headers=headers, params=params)
            except httpx.HTTPError as exc:
                raise transport_failure(exc, what, deduped=deduped) from exc
            finally:
                self._release(bucket, route, response)

            status = response.status_code
            if status in (401, 403, 429) and response.headers.get("x-ratelimit-scope") != "shared":
                self._count_invalid()
            if status == 401:
                with self._lock:
                    self._unauthorized = True
                log.error("discord: 401 on %s; refusing further calls", route.key)
                raise Unauthorized("discord.unauthorized", _UNAUTHORIZED, response=response)
            if response.is_success:
                return response
            if status != 429:
                raise failure(response, what, deduped=deduped)

            delay = retry_after(response)
            if delay is None:
                # No JSON body: not Discord's limiter but Cloudflare blocking this IP.
                log.error("discord: non-JSON 429 on %s (Cloudflare block?)", route.key)
                raise Unavailable(
                    "discord.unavailable",
                    f"{what}: 429 without JSON body (Cloudflare block of this IP?)",
                    response=response,
                )
            every_route = is_global(response)
            self._note_429(route, delay, every_route)
            log.warning("discord: 429 on %s (global=%s), retry in %.3fs", route.key, every_route, delay)
            if attempt == self._MAX_429_RETRIES:
                break
            self._sleep(delay)
        raise RateLimited("discord.rate_limited", f"{what}: still rate limited after {self._MAX_429_RETRIES} retries")

    def _pace(self, wait: float) -> None:
        if wait > 0:
            self._sleep(wait)

    def _shared_key(self, route: Route) -> str:
        return f"discord:bucket:{self._route_buckets.get(route.key, route.key)}:{route.major}"

    def _pace_shared_route(self, route: Route, bucket: _Bucket) -> None:
        # Other processes spend the same bucket: pace at its learned quota across all of them.
        if self._limiter.shared and bucket.limit and bucket.period > 0:
            self._pace(self._limiter.reserve(self._shared_key(route), bucket.limit / bucket.period, 1.0))

    def _bucket_for(self, route: Route) -> _Bucket:
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

    def _acquire(self, route: Route) -> _Bucket:
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

    def _release(self, reserved: _Bucket, route: Route, response: httpx.Response | None) -> None:
        with self._cond:
            reserved.pending -= 1
            if response is not None:
                self._update_bucket(route, response)
            self._cond.notify_all()

    def _update_bucket(self, route: Route, response: httpx.Response) -> None:
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

    def _note_429(self, route: Route, delay: float, every_route: bool) -> None:
        with self._cond:
            until = self._clock() + delay
            if every_route:
                self._global_until = max(self._global_until, until)
                if self._limiter.shared:
                    self._limiter.block(_GLOBAL_KEY, delay)  # every process pauses
            else:
                if self._limiter.shared:
                    self._limiter.block(self._shared_key(route), delay)
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

    def _pace_invalid(self) -> None:
        with self._lock:
            horizon = self._clock() - self._INVALID_WINDOW
            while self._invalid and self._invalid[0] < horizon:
                self._invalid.popleft()
            count = len(self._invalid)
        if count >= self._INVALID_REFUSE_AT:
            raise RateLimited(
                "discord.invalid_request_limit",
                f"{count} invalid Discord requests (401/403/429) in 10 minutes; "
                "pausing calls before Discord bans this IP",
            )
        if count >= self._INVALID_SLOWDOWN_AT:
            self._sleep(self._INVALID_PACING)
