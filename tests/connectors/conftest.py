"""What the connector tests share: a transport that keeps the requests a client really sent."""

from __future__ import annotations

import httpx
import pytest


class SpyTransport(httpx.HTTPTransport):
    """Keeps the requests the client really sent (VCR, patched into HTTPTransport, answers them)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        return super().handle_request(request)


@pytest.fixture
def spy() -> SpyTransport:
    return SpyTransport()


@pytest.fixture(scope="module")
def vcr_config():
    """Cassettes replay only (written from the documented wire format), matched on everything a
    request carries; a module whose wire needs another match overrides it."""
    return {
        "record_mode": "none",
        "filter_headers": ["authorization"],
        "match_on": ["method", "scheme", "host", "port", "path", "query", "body"],
    }


@pytest.fixture
def sleeps() -> list[float]:
    """What a client under test asked to sleep, in order (it is given ``sleep=sleeps.append``)."""
    return []
