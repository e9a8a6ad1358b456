"""Hotmart's wire: the OAuth token, the rate-limit budget, 429s and 401s, and judging replies.

:class:`HotmartWire` sends one GET and returns the JSON object Hotmart answered, or raises a
:class:`~connectors.errors.WireError`. :mod:`connectors.hotmart_api` builds the queries, follows
the pages and narrows the date windows on top of it. Wire facts: ``shared/reference/hotmart-api.md``.

* The token: ``POST <auth url>?grant_type=client_credentials&client_id=..&client_secret=..`` with
  ``Authorization: Basic <the basic token>``; opaque, kept until shortly before ``expires_in``.
  An API 401 (expired or revoked) fetches a new one once; a second 401 fails.
* Pacing by the headers: when ``RateLimit-Remaining`` reaches 0, the next request waits until
  ``RateLimit-Reset`` (seconds). A 429 waits ``Retry-After`` (else ``RateLimit-Reset``, else a
  backoff) and asks again, for up to ``max_rate_wait`` seconds in all per request.
* The client secret travels in the token URL: it never appears in a log line or an error detail
  (httpx's own request log line is redacted too).
"""

from __future__ import annotations

import itertools
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from connectors._http import classify_transport, json_or_none, seconds, tls_context
from connectors.errors import RateLimited, Rejected, Unauthorized, Unavailable

log = logging.getLogger("connectors.hotmart")

UNAUTHORIZED = "hotmart.unauthorized"
UNAVAILABLE = "hotmart.unavailable"
RATE_LIMITED = "hotmart.rate_limited"
BAD_REQUEST = "hotmart.bad_request"

CREDENTIALS_HINT = (
    "check HOTMART_CLIENT_ID, HOTMART_CLIENT_SECRET and HOTMART_BASIC (Hotmart: Tools > Developer Credentials) "
    "and that they are production credentials when HOTMART_API_BASE is production (sandbox ones for the sandbox)"
)
_BACKOFF = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)  # a 429 that names no wait
_TOKEN_MARGIN = 300.0  # a token is renewed this long before it expires (or half its life if shorter)


class ServerError(Unavailable):
    """A 5xx or a timeout: what a too wide date window answers (Hotmart's 30 s database budget)."""


class HotmartWire:
    """One account's token and rate-limit budget, and the GETs made with them. Thread-safe."""

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        basic: str,
        *,
        auth_url: str,
        api_base: str,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 40.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        max_rate_wait: float = 900.0,
    ):
        self._client_id, self._client_secret = client_id, client_secret
        self._basic = basic if basic.lower().startswith("basic ") else f"Basic {basic}"
        self._auth_url = auth_url
        self._sleep, self._clock = sleep, clock
        self._timeout = timeout
        self._max_rate_wait = max_rate_wait
        # Hotmart's database gives up after 30 s: a read timeout a little longer, a short connect one.
        self._client = httpx.Client(
            base_url=api_base.rstrip("/"),
            transport=transport or httpx.HTTPTransport(verify=tls_context()),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            headers={"Accept": "application/json"},
        )
        self._lock = threading.Lock()
        self._token: str | None = None
        self._token_until = 0.0
        self._remaining: int | None = None  # RateLimit-Remaining of the last reply
        self._reset_at = 0.0  # when the budget refills (monotonic)
        self.requests = 0  # GETs and token requests sent (the doctor and benches report it)
        self.waited = 0.0  # seconds spent waiting for the rate limit
        _redact_httpx_log()

    def close(self) -> None:
        self._client.close()

    # ------------------------------------------------------------------ secrets

    def scrub(self, text: str) -> str:
        """``text`` with every secret this client holds replaced."""
        for secret in (self._client_secret, self._basic.split(" ", 1)[-1], self._token):
            if secret:
                text = text.replace(secret, "***")
        return text

    # ------------------------------------------------------------------ token

    def token(self) -> str:
        with self._lock:
            if self._token is not None and self._clock() < self._token_until:
                return self._token
        return self._new_token()

    def drop_token(self, token: str) -> None:
        with self._lock:
            if self._token == token:
                self._token = None

    def _new_token(self) -> str:
        params = {
            "grant_type": "client_credentials",
            "client_id": self._client_id,
            "client_secret": self._client_secret,
        }
        headers = {"Authorization": self._basic, "Content-Type": "application/json"}
        try:
            response = self._send("POST", self._auth_url, "obtaining an API token", params=params, headers=headers)
        except ServerError as exc:  # a slow token endpoint is not a too wide window
            raise Unavailable(exc.error, exc.detail) from None
        body = json_or_none(response)
        if response.status_code in (400, 401, 403):
            raise Unauthorized(
                UNAUTHORIZED,
                f"Hotmart refused the API credentials ({self.scrub(_said(body, response))}); {CREDENTIALS_HINT}",
                response=response,
            )
        if response.status_code >= 500:
            raise Unavailable(UNAVAILABLE, f"obtaining an API token: Hotmart answered HTTP {response.status_code}")
        token = body.get("access_token") if isinstance(body, dict) else None
        if not response.is_success or not isinstance(token, str) or not token:
            raise Unavailable(
                UNAVAILABLE, f"obtaining an API token: HTTP {response.status_code} without an access_token"
            )
        lifetime = seconds(body.get("expires_in", 0)) or 0.0
        with self._lock:
            self._token = token
            self._token_until = self._clock() + lifetime - min(_TOKEN_MARGIN, lifetime / 2)
        log.info("hotmart: API token obtained (valid %.0f s)", lifetime)
        return token

    # ------------------------------------------------------------------ GET

    def get(self, path: str, params: dict[str, Any], what: str) -> dict[str, Any]:
        """Hotmart's JSON object for one GET; a 401 renews the token once."""
        for renewed in (False, True):
            token = self.token()
            response = self._send("GET", path, what, params=params, headers={"Authorization": f"Bearer {token}"})
            if response.status_code != 401:
                break
            self.drop_token(token)
            if not renewed:
                said = self.scrub(_said(json_or_none(response), response))
                log.info("hotmart: token refused (%s), obtaining a new one", said)
        return self._judge(response, what)

    def _judge(self, response: httpx.Response, what: str) -> dict[str, Any]:
        status, body = response.status_code, json_or_none(response)
        if response.is_success:
            if isinstance(body, dict):
                return body
            raise Unavailable(UNAVAILABLE, f"{what}: HTTP {status} with an unreadable body", response=response)
        said = self.scrub(_said(body, response))
        if status in (401, 403):
            raise Unauthorized(
                UNAUTHORIZED, f"{what}: Hotmart refused the token ({said}); {CREDENTIALS_HINT}", response=response
            )
        if status >= 500:
            raise ServerError(UNAVAILABLE, f"{what}: Hotmart answered {said}", response=response)
        raise Rejected(BAD_REQUEST, f"{what}: Hotmart refused the query ({said})", response=response)

    # ------------------------------------------------------------------ sending, paced

    def _send(self, method: str, url: str, what: str, **kwargs: Any) -> httpx.Response:
        """One request, waiting out the rate limit and 429s; transport failures raised."""
        waited = 0.0
        for attempt in itertools.count():
            self._wait_for_budget()
            try:
                response = self._client.request(method, url, **kwargs)
            except httpx.HTTPError as exc:
                failure = classify_transport(exc)
                text = f"no reply within {self._timeout:g} s" if failure.timeout else self.scrub(failure.text)
                error = ServerError if failure.timeout else Unavailable
                raise error(UNAVAILABLE, f"{what}: {text}") from None
            finally:
                self.requests += 1
            self._note_budget(response)
            log.debug("hotmart: %s %s -> %s", method, httpx.URL(url).path, response.status_code)
            if response.status_code != 429:
                return response
            delay = _retry_delay(response, attempt)
            if waited + delay > self._max_rate_wait:
                raise RateLimited(
                    RATE_LIMITED,
                    f"{what}: Hotmart still answers 429 after {waited:.0f} s of waiting; try again later",
                    response=response,
                )
            log.info("hotmart: rate limited (429), asking again in %.1f s", delay)
            waited += delay
            self._pause(delay)
            with self._lock:
                self._remaining = None  # waited as told: the next reply says the new budget
        raise AssertionError("unreachable")

    def _note_budget(self, response: httpx.Response) -> None:
        remaining = _integer(response.headers.get("RateLimit-Remaining"))
        reset_header = response.headers.get("RateLimit-Reset")
        reset = seconds(reset_header) if reset_header is not None else None
        with self._lock:
            if remaining is not None:
                self._remaining = remaining
            if reset is not None:
                self._reset_at = self._clock() + reset

    def _wait_for_budget(self) -> None:
        with self._lock:
            exhausted = self._remaining is not None and self._remaining <= 0
            wait = self._reset_at - self._clock() if exhausted else 0.0
            if exhausted:
                self._remaining = None  # the reply to the next request says the new budget
        if wait > 0:
            log.info("hotmart: rate-limit budget spent, waiting %.1f s for it to refill", wait)
            self._pause(wait)

    def _pause(self, delay: float) -> None:
        self.waited += delay
        self._sleep(delay)


def _retry_delay(response: httpx.Response, attempt: int) -> float:
    for header in ("Retry-After", "RateLimit-Reset"):
        value = response.headers.get(header)
        delay = seconds(value) if value is not None else None
        if delay is not None:
            return max(delay, 0.5)  # "0" from a window just refilling: ask again shortly
    return _BACKOFF[min(attempt, len(_BACKOFF) - 1)]


def _integer(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _said(body: Any, response: httpx.Response) -> str:
    """Hotmart's error envelope ``{error, error_description}`` in a few words, with the status."""
    status = f"HTTP {response.status_code}"
    if not isinstance(body, dict):
        return status
    words = [str(body[key]) for key in ("error", "error_description", "message") if body.get(key)]
    return f"{status}: {'; '.join(words)[:300]}" if words else status


# httpx logs every request's URL at INFO: the token URL carries the client secret.
_SECRET_PARAM = re.compile(r"(client_secret=)[^&\s\"']+")


class _RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_redacted(arg) for arg in record.args)
        return True


def _redacted(arg: Any) -> Any:
    if isinstance(arg, str | httpx.URL) and "client_secret=" in str(arg):
        return _SECRET_PARAM.sub(r"\1***", str(arg))
    return arg


_REDACTOR = _RedactSecrets()


def _redact_httpx_log() -> None:
    logger = logging.getLogger("httpx")
    if _REDACTOR not in logger.filters:
        logger.addFilter(_REDACTOR)
