"""What the Discord and ManyChat checks share: read-only calls, and one FAIL for a service that
does not answer. Nothing is granted, tagged or sent."""

from __future__ import annotations

import time
from typing import Any

import httpx

from engine.doctor.core import FAIL, Check


class Unreachable(Exception):
    """A call that cannot answer the question (transport error, 5xx): reported, checks stop."""


class Refused(Exception):
    """A service answered a read with an error (ManyChat's reads): one FAIL naming the call."""

    def __init__(self, path: str, status: int):
        super().__init__(path, status)
        self.path, self.status = path, status


class ReadOnlyClient:
    """Read-only calls with one wait on a 429 (a preflight makes a handful of requests)."""

    def __init__(self, base_url: str, headers: dict[str, str], transport: httpx.BaseTransport | None):
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=10, transport=transport)

    def get(self, path: str, **params: Any) -> httpx.Response:
        for _ in range(2):
            try:
                response = self._http.get(path, params=params or None)
            except httpx.HTTPError as exc:
                raise Unreachable(f"{type(exc).__name__} calling {path}") from exc
            if response.status_code != 429:
                break
            time.sleep(min(float(response.headers.get("Retry-After", "1") or 1), 5.0))
        if response.status_code >= 500 or response.status_code == 429:
            raise Unreachable(f"HTTP {response.status_code} from {path}")
        return response

    def close(self) -> None:
        self._http.close()


class ServiceDoctor:
    """The checks of one outside service, run through one client; a service that does not answer is one FAIL."""

    area, title = "", ""  # the Check's area; the service's name in a message
    base_setting = ""  # the setting naming the service's address

    def __init__(self, client: ReadOnlyClient):
        self.client = client
        self.checks: list[Check] = []

    def run(self) -> list[Check]:
        try:
            self._run()
        except Unreachable as exc:
            self._add(FAIL, f"{self.title} did not answer ({exc}): check {self.base_setting} and try again")
        except Refused as exc:  # raised by ManyChat's reads
            self._add(FAIL, f"{self.title} refused a read of {exc.path} (HTTP {exc.status}): check the token's page")
        finally:
            self.client.close()
        return self.checks

    def _add(self, status: str, message: str) -> None:
        self.checks.append(Check(self.area, status, message))

    def _run(self) -> None:
        raise NotImplementedError
