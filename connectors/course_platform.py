"""The course platform's wire: signed outbound webhooks (Standard Webhooks 1.0, symmetric), and
signed reads of the platform's enrollments.

Every message is a ``POST`` of a JSON body to ``COURSE_WEBHOOK_URL`` with three headers:

* ``webhook-id``: the message id, the same on every attempt (the receiver deduplicates on it);
* ``webhook-timestamp``: this attempt's time, integer Unix seconds (the receiver refuses old ones);
* ``webhook-signature``: ``v1,`` + the base64 HMAC-SHA256 of ``"{id}.{timestamp}.{body}"``.

The key: a secret written ``whsec_<base64>`` (the spec's way of writing one) is the bytes that
base64 stands for, which is what the off-the-shelf libraries (``standardwebhooks``, svix) do with
it; any other secret is its UTF-8 bytes (a receiver then hands the library bytes, not the text).

:class:`CoursePlatformClient` sends one message and judges the reply, raising the typed errors of
:mod:`connectors.errors` (2xx only is success, redirects are not followed, as the spec says).

A read (``COURSE_ENROLLMENTS_URL``, reconcile) is a ``GET`` signed the same way over an empty body:
a fresh ``webhook-id`` per request (``req_...``), so the platform verifies it with the library and
secret it already verifies messages with, and the secret itself never travels. A read is safe to
repeat: 429, 408, 5xx and no answer are tried again within the call (Retry-After, else 1, 2, 4 s).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import time
import uuid
from collections.abc import Callable, Mapping

import httpx

from connectors._http import classify_transport, seconds, tls_context
from connectors.errors import Misconfigured, RateLimited, Rejected, Unauthorized, Unavailable

__all__ = [
    "DEFAULT_TIMEOUT",
    "SECRET_PREFIX",
    "CoursePlatformClient",
    "sign",
    "signing_key",
]

log = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"
# The spec recommends 15 to 30 s for a receiver to answer; a worker thread waits this long at most.
DEFAULT_TIMEOUT = 15.0
CONNECT_TIMEOUT = 5.0

UNAVAILABLE = "classes.unavailable"
RATE_LIMITED = "classes.rate_limited"
REJECTED = "classes.rejected"
MISCONFIGURED = "classes.misconfigured"
UNAUTHORIZED = "classes.unauthorized"

_EXCERPT = 200  # characters of a refusal's body quoted for the admin
WEBHOOK_URL, ENROLLMENTS_URL = "COURSE_WEBHOOK_URL", "COURSE_ENROLLMENTS_URL"
# A read is repeated after these pauses (a GET changes nothing); a longer Retry-After is not waited.
_READ_BACKOFF = (1.0, 2.0, 4.0)
_MAX_RETRY_AFTER = 30.0


def signing_key(secret: str) -> bytes:
    """The HMAC key a secret stands for: ``whsec_<base64>`` is decoded, anything else is UTF-8.

    Raises ValueError for an empty secret or a ``whsec_`` one that is not base64.
    """
    if secret.startswith(SECRET_PREFIX):
        encoded = secret[len(SECRET_PREFIX) :].strip()
        try:
            # Unpadded base64 is common in the wild: pad it, as the reference libraries do.
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"a secret starting with {SECRET_PREFIX} must be base64 after the prefix") from None
    else:
        key = secret.encode()
    if not key:
        raise ValueError("the webhook secret is empty")
    return key


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value of one message: ``v1,<base64 HMAC-SHA256>``."""
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


class CoursePlatformClient:
    """Posts signed messages to one URL; returns the 2xx response or raises a WireError."""

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        wrap_transport: Callable[[httpx.BaseTransport], httpx.BaseTransport] | None = None,
    ):
        """``clock``: wall-clock seconds for ``webhook-timestamp`` (receivers compare it with theirs);
        ``sleep``: the pause between a read's attempts; ``transport``: a test double instead of the
        network; ``wrap_transport``: a layer around either (the service counts calls with it)."""
        self._url = url
        self._key = signing_key(secret)
        self._clock = clock
        self._sleep = sleep
        transport = transport or httpx.HTTPTransport(verify=tls_context())
        self._client = httpx.Client(
            transport=wrap_transport(transport) if wrap_transport else transport,
            timeout=httpx.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT)),
            follow_redirects=False,
            headers={"Content-Type": "application/json", "User-Agent": "lifecycle-engine"},
        )

    def deliver(self, msg_id: str, body: bytes, what: str) -> httpx.Response:
        """Send one message (``what`` names it in errors); signed afresh for this attempt."""
        try:
            response = self._client.post(self._url, content=body, headers=self._signed(msg_id, body))
        except httpx.HTTPError as exc:
            failure = classify_transport(exc)
            raise Unavailable(UNAVAILABLE, f"{what}: the course platform did not answer ({failure.text})") from exc
        _judge(response, what, WEBHOOK_URL)
        return response

    def read(self, url: str, params: Mapping[str, str], what: str) -> httpx.Response:
        """One signed ``GET`` of ``url`` (``COURSE_ENROLLMENTS_URL``) with ``params`` added to its query:
        the 2xx response, after trying again what may pass (429, 408, 5xx, no answer); else a WireError."""
        for pause in (*_READ_BACKOFF, None):
            try:
                return self._read_once(url, params, what)
            except (Unavailable, RateLimited) as exc:
                wait = _retry_after(exc.response, pause)
                if wait is None or wait > _MAX_RETRY_AFTER:
                    raise
                log.info("classes: %s: %s, trying again in %.1fs", what, exc.error, wait)
                self._sleep(wait)
        raise AssertionError("unreachable")

    def _read_once(self, url: str, params: Mapping[str, str], what: str) -> httpx.Response:
        signed = self._signed(f"req_{uuid.uuid4().hex}", b"")  # a fresh id: a read is no message to deduplicate
        try:
            # Added to the URL's own query (httpx's params= would replace it).
            response = self._client.get(httpx.URL(url).copy_merge_params(dict(params)), headers=signed)
        except httpx.HTTPError as exc:
            failure = classify_transport(exc)
            raise Unavailable(UNAVAILABLE, f"{what}: the course platform did not answer ({failure.text})") from exc
        _judge(response, what, ENROLLMENTS_URL)
        return response

    def _signed(self, msg_id: str, body: bytes) -> dict[str, str]:
        """The three Standard Webhooks headers of ``body`` under ``msg_id``, stamped now."""
        timestamp = int(self._clock())
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(self._key, msg_id, timestamp, body),
        }

    def close(self) -> None:
        self._client.close()


def _retry_after(response: httpx.Response | None, pause: float | None) -> float | None:
    """How long to wait before reading again: the reply's Retry-After (seconds), else ``pause``;
    None when no attempt is left (``pause`` None)."""
    if pause is None:
        return None
    header = response.headers.get("retry-after") if response is not None else None
    said = seconds(header) if header is not None else None  # None too for the HTTP-date form
    return pause if said is None else said


def _judge(response: httpx.Response, what: str, setting: str) -> None:
    """Raise the error a non-2xx reply stands for (Standard Webhooks' "delivery success and failure");
    ``setting`` names the address an admin fixes."""
    status = response.status_code
    if 200 <= status < 300:
        return
    said = f"{what}: the course platform answered HTTP {status}"
    excerpt = " ".join(response.text[:_EXCERPT].split()) if response.content else ""
    quoted = f" ({excerpt!r})" if excerpt else ""
    if status >= 500 or status == 408:
        raise Unavailable(UNAVAILABLE, f"{said}{quoted}", response=response)
    if status == 429:
        raise RateLimited(RATE_LIMITED, f"{said}: too many requests", response=response)
    if 300 <= status < 400:
        where = response.headers.get("location", "?")
        raise Misconfigured(
            MISCONFIGURED,
            f"{said}, a redirect to {where}: the engine does not follow redirects, set {setting} to the final address",
            response=response,
        )
    if status in (401, 403):
        raise Unauthorized(
            UNAUTHORIZED,
            f"{said}: it refused the signature; COURSE_WEBHOOK_SECRET must be the secret the platform verifies "
            f"with{quoted}",
            response=response,
        )
    if status in (404, 405, 410):
        raise Misconfigured(
            MISCONFIGURED,
            f"{said}: {_NOTHING_THERE[setting]}; check {setting}{quoted}",
            response=response,
        )
    raise Rejected(REJECTED, f"{said}: it refused this {_REQUEST[setting]}{quoted}", response=response)


_NOTHING_THERE = {WEBHOOK_URL: "nothing receives webhooks there", ENROLLMENTS_URL: "nothing serves enrollments there"}
_REQUEST = {WEBHOOK_URL: "message", ENROLLMENTS_URL: "read"}
