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
