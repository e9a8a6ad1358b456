"""ManyChat wire client: endpoints, pacing, 429s and judging replies.

Wire facts come from ``shared/reference/manychat.md``. The points that shape this code:

* a reply succeeded only if HTTP is 2xx **and** the body says ``"status": "success"``;
  ManyChat sometimes answers HTTP 200 with an error body, and unknown paths answer
  with an HTML page;
* ``sendFlow`` has no idempotency key and no delivery receipt, so once a request may
  have reached ManyChat it is never sent again automatically;
* per-endpoint rate limits (10/s default, 20/s sendFlow, 50/s findBySystemField,
  100 sendFlow per subscriber per hour) are paced client-side.

The worker is synchronous (Huey), so this uses a blocking ``httpx.Client``.
:mod:`connectors.manychat` maps steps onto this client.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from connectors._http import classify_transport, json_or_none, seconds, tls_context
from connectors.errors import Misconfigured, RateLimited, Rejected, Unauthorized, Unavailable, WireError
from connectors.throttle import Limiter, LocalLimiter

log = logging.getLogger("connectors.manychat")  # the name operators already filter on

SUBSCRIBER_NOT_FOUND = "manychat.subscriber_not_found"
UNKNOWN_TAG = "manychat.unknown_tag"
UNKNOWN_FIELD = "manychat.unknown_field"
UNKNOWN_FLOW = "manychat.unknown_flow"
UNAUTHORIZED = "manychat.unauthorized"
UNAVAILABLE = "manychat.unavailable"
RATE_LIMITED = "manychat.rate_limited"
BAD_REQUEST = "manychat.bad_request"

FIND = "/fb/subscriber/findBySystemField"
GET_INFO = "/fb/subscriber/getInfo"
CREATE = "/fb/subscriber/createSubscriber"
ADD_TAG = "/fb/subscriber/addTagByName"
REMOVE_TAG = "/fb/subscriber/removeTagByName"
SET_FIELD = "/fb/subscriber/setCustomFieldByName"
SEND_FLOW = "/fb/sending/sendFlow"

# Requests per second for each endpoint, by class (manychat.md section 3: per-endpoint ceilings).
_DEFAULT_RATES = {"default": 10.0, "send_flow": 20.0, "find": 50.0}
_ENDPOINT_CLASS = {FIND: "find", SEND_FLOW: "send_flow"}
FLOWS_PER_SUBSCRIBER_HOUR = 100
FLOW_WINDOW_SECONDS = 3600

# A 429 happens before ManyChat acts, so repeating the call is safe for every endpoint.
_BACKOFF = (1.0, 2.0, 4.0)
# A Retry-After longer than this would pin a worker thread; hand the step back instead.
_MAX_RETRY_AFTER = 30.0

_NOT_FOUND_WORDS = ("not found", "does not exist", "doesn't exist", "not exist", "no such", "unknown")
_RATE_LIMIT_WORDS = ("too many requests", "rate limit")


class ManyChatClient:
    """Sends ManyChat API requests within its per-endpoint limits and judges the replies."""

    def __init__(
        self,
        token: str,
        *,
        api_base: str = "https://api.manychat.com",
        transport: httpx.BaseTransport | None = None,
        timeout: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rates: dict[str, float] | None = None,
        limiter: Limiter | None = None,
        wrap_transport: Callable[[httpx.BaseTransport], httpx.BaseTransport] | None = None,
    ):
        """``transport``: a test double instead of the network; ``wrap_transport``: a layer around
        either (the service counts calls with it), which must pass the request on unchanged."""
        # The network transport says when it starts writing a request (httpcore's trace), so a flow
        # is marked in flight only then: not while connecting. A test double is handed the request
        # at once, so it is marked just before.
        self._traced = transport is None
        transport = transport or httpx.HTTPTransport(verify=tls_context())
        self._client = httpx.Client(
            base_url=api_base,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            transport=wrap_transport(transport) if wrap_transport else transport,
            timeout=timeout,
        )
        self._timeout = timeout
        self._sleep = sleep
        self._clock = clock
        merged = {**_DEFAULT_RATES, **(rates or {})}
        self._rates = merged
        # One key per endpoint (ManyChat's limits are per endpoint), shared by every worker
        # process when the limiter lives in Redis.
        self._limiter = limiter or LocalLimiter(clock)
        # Subscriber -> when each of their flows went out in the last hour. Every new student gets
        # flows, so subscribers an hour quiet are forgotten (at most once a minute): a plain list
        # each (a deque costs 624 bytes even holding one time), and no entry outlives its hour.
        self._flows_sent: dict[str, list[float]] = {}
        self._flows_lock = threading.Lock()
        self._forget_at = 0.0

    def close(self) -> None:
        self._client.close()

    # ------------------------------------------------------------- flow budget

    def flow_budget_left(self, sid: str) -> bool:
        with self._flows_lock:
            sent = self._flows_sent.get(sid)
            if not sent:
                return True
            del sent[: bisect.bisect_right(sent, self._clock() - FLOW_WINDOW_SECONDS)]
            return len(sent) < FLOWS_PER_SUBSCRIBER_HOUR

    def count_flow(self, sid: str) -> None:
        with self._flows_lock:
            now = self._clock()
            self._flows_sent.setdefault(sid, []).append(now)
            if now >= self._forget_at:
                horizon = now - FLOW_WINDOW_SECONDS
                for quiet in [key for key, times in self._flows_sent.items() if times[-1] <= horizon]:
                    del self._flows_sent[quiet]
                self._forget_at = now + 60

    def flow_subscribers(self) -> int:
        """Subscribers whose flows are being counted (tests: the count stays bounded)."""
        with self._flows_lock:
            return len(self._flows_sent)

    # ------------------------------------------------------------------- HTTP

    def _pace(self, path: str) -> None:
        rate = self._rates.get(_ENDPOINT_CLASS.get(path, "default"), self._rates["default"])
        # A second of burst, as the fake and ManyChat's per-second counting allow.
        wait = self._limiter.reserve(f"manychat:{path}", rate, rate)
        if wait > 0:
            self._sleep(wait)

    def _in_flight_hook(self, before_send: Callable[[], None] | None) -> dict[str, Any] | None:
        """Call ``before_send`` once, when the request is about to be written (see ``_traced``)."""
        if before_send is None:
            return None
        if not self._traced:
            before_send()
            return None
        called = False

        def trace(event: str, info: dict[str, Any]) -> None:
            nonlocal called
            if event in _WRITE_STARTED and not called:
                called = True
                before_send()  # raising here aborts the request: nothing is sent unmarked

        return {"trace": trace}

    def call(
        self,
        method: str,
        path: str,
        what: str,
        *,
        params: dict[str, Any] | None = None,
        json: dict[str, Any] | None = None,
        deduped: bool = True,
        before_send: Callable[[], None] | None = None,
        not_sent: Callable[[], None] | None = None,
    ) -> Any:
        """One request, resent on 429 within limits: returns the reply's ``data`` or raises a
        :class:`~connectors.errors.WireError` whose detail starts with ``what``.

        ``deduped=False`` (a flow): once the request may have reached ManyChat, a failure is
        final and says the message may have been delivered.
        """
        for attempt in range(len(_BACKOFF) + 1):
            self._pace(path)
            try:
                response = self._client.request(
                    method, path, params=params, json=json, extensions=self._in_flight_hook(before_send)
                )
            except httpx.HTTPError as exc:
                failure = classify_transport(exc)
                if not failure.reached:  # nothing left this process: certainly not delivered
                    raise _failure(UNAVAILABLE, failure.text, what, deduped=deduped, sent=False) from exc
                if failure.timeout:
                    raise _failure(UNAVAILABLE, f"no reply within {self._timeout:g}s", what, deduped=deduped) from exc
                # The connection dropped mid-exchange.
                raise _failure(UNAVAILABLE, failure.text, what, deduped=deduped) from exc
            log.debug("manychat: %s %s -> %s", method, path, response.status_code)
            try:
                return _judge(response, what, deduped=deduped)
            except RateLimited:
                if attempt == len(_BACKOFF):
                    raise
                delay = _retry_after(response)
                if delay is None:
                    delay = _BACKOFF[attempt]
                if delay > _MAX_RETRY_AFTER:
                    raise
            log.info("manychat: %s rate limited, retrying in %.1fs", path, delay)
            if not_sent is not None:
                not_sent()  # a 429 is a refusal: nothing is in flight while we wait
            self._sleep(delay)
        raise AssertionError("unreachable")


# httpcore's trace events that mean "the request's bytes go out now".
_WRITE_STARTED = frozenset({"http11.send_request_headers.started", "http2.send_request_headers.started"})


# ----------------------------------------------------------------- judging


def _judge(response: httpx.Response, what: str, *, deduped: bool) -> Any:
    """The reply's ``data`` when ManyChat says it succeeded; otherwise raises the named failure."""
    status = response.status_code
    body = json_or_none(response)
    if not isinstance(body, dict):
        body = None
    if body is not None and response.is_success and body.get("status") == "success":
        return body.get("data")

    message = _error_text(body) if body is not None else f"HTTP {status} with a non-JSON body"
    lowered = message.lower()
    if status in (401, 403):
        error = UNAUTHORIZED
    elif status == 429 or any(word in lowered for word in _RATE_LIMIT_WORDS):
        error = RATE_LIMITED
    elif status >= 500:
        error = UNAVAILABLE
    elif response.is_success and (body is None or body.get("status") != "error"):
        # A 2xx we cannot read: ManyChat may well have acted on it.
        error, message = UNAVAILABLE, f"HTTP {status} with an unreadable body"
    else:
        error = _classify(lowered, body)
    raise _failure(error, message, what, deduped=deduped, response=response)


def answered_in_json(exc: WireError) -> bool:
    """False when ManyChat's reply was not a JSON object (an HTML page: e.g. an unknown path)."""
    return exc.response is None or isinstance(json_or_none(exc.response), dict)


def _classify(lowered: str, body: dict[str, Any] | None) -> str:
    """Configuration errors are told apart only by ManyChat's message text."""
    if body is not None and body.get("code") == 2011:  # "subscriber not found" per one gateway doc
        return SUBSCRIBER_NOT_FOUND
    if any(word in lowered for word in _NOT_FOUND_WORDS):
        for noun, error in (("tag", UNKNOWN_TAG), ("field", UNKNOWN_FIELD), ("flow", UNKNOWN_FLOW)):
            if noun in lowered:
                return error
        if "subscriber" in lowered or "contact" in lowered:
            return SUBSCRIBER_NOT_FOUND
    return BAD_REQUEST


def _error_text(body: dict[str, Any]) -> str:
    parts = [str(body.get("message") or "")]
    details = body.get("details")
    if isinstance(details, dict):
        for item in details.get("messages") or []:
            if isinstance(item, dict) and item.get("message"):
                parts.append(str(item["message"]))
    text = "; ".join(part for part in parts if part) or "error without a message"
    return text[:500]


_ERROR_CLASSES: dict[str, type[WireError]] = {
    UNAVAILABLE: Unavailable,
    RATE_LIMITED: RateLimited,
    UNAUTHORIZED: Unauthorized,
    UNKNOWN_TAG: Misconfigured,
    UNKNOWN_FIELD: Misconfigured,
    UNKNOWN_FLOW: Misconfigured,
    SUBSCRIBER_NOT_FOUND: Rejected,
    BAD_REQUEST: Rejected,
}


def _failure(
    error: str,
    message: str,
    what: str,
    *,
    deduped: bool,
    sent: bool = True,
    response: httpx.Response | None = None,
) -> WireError:
    """The named failure of a request; ``sent`` is False only when it surely never reached ManyChat."""
    if error == UNAVAILABLE and sent and not deduped:
        # Timeout after sending, 5xx or an unreadable 2xx: it may have gone out.
        return Unavailable(
            UNAVAILABLE,
            f"{what}: {message or 'no usable reply'}. The message may have been "
            "delivered; check the contact's chat in ManyChat before sending it again by hand.",
            retryable=False,
            maybe_delivered=True,
            response=response,
        )
    # Pre-send failures (connect error, 429) may be retried; rejections are final.
    status = response.status_code if response is not None else None
    return _ERROR_CLASSES[error](error, _detail(error, message, status, what), response=response)


def _detail(error: str, message: str, status: int | None, what: str) -> str:
    said = f"ManyChat said: {message}" if status is not None else message
    hint = {
        UNKNOWN_TAG: "create the tag in ManyChat (Settings > Tags), then retry",
        UNKNOWN_FIELD: "create the custom field in ManyChat (Settings > Fields), then retry",
        UNKNOWN_FLOW: "check the flow_ns in the rules against ManyChat's flow URL",
        UNAUTHORIZED: "the API key is wrong, regenerated or the account lost Pro",
        SUBSCRIBER_NOT_FOUND: "an admin must make first contact with the student in ManyChat",
    }.get(error)
    status_text = f" (HTTP {status})" if status is not None else ""
    return f"{what}: {said}{status_text}" + (f"; {hint}" if hint else "")


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    return seconds(value)  # None for the HTTP-date form: fall back to our own backoff
