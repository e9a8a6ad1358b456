"""Wire helpers shared by the Discord and ManyChat clients (private to connectors/)."""

from __future__ import annotations

import functools
import ssl
from dataclasses import dataclass
from typing import Any

import httpx


@functools.cache
def tls_context() -> ssl.SSLContext:
    """httpx's default verified context, built once per process and shared by every client:
    building one reads the whole CA bundle (about 90 ms of CPU per client otherwise)."""
    return httpx.create_ssl_context()


@dataclass(frozen=True)
class TransportFailure:
    """What an ``httpx.HTTPError`` says about a request that got no response."""

    reached: bool  # the request may have reached the server (False: it surely did not)
    timeout: bool
    text: str  # "ExceptionName: message", for details and logs


def classify_transport(exc: httpx.HTTPError) -> TransportFailure:
    # A connect error or pool timeout never left this process; anything later might have.
    reached = not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return TransportFailure(reached=reached, timeout=isinstance(exc, httpx.TimeoutException), text=text)


def json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def seconds(value: Any) -> float | None:
    """A non-negative delay from a Retry-After-like value, or None when it is not a number."""
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None  # e.g. Retry-After's HTTP-date form
