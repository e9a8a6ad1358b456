"""A course platform that mirrors its classes by polling the engine's read API (``/api/v1``) instead
of receiving the class webhooks, as docs/operations/course-platform.md ("Polling instead of
webhooks") tells a platform to: one cursor per class, kept between polls, each page applied in
order (a removal is a tombstone: ``removed: true``), pages asked again at once while ``has_more``.

``client`` is any httpx client aimed at the engine (a ``TestClient``, or ``httpx.Client`` with a
``base_url``); the poller records every change it was handed, so a test can tell a skipped change
from a repeated one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class PollingPlatform:
    client: httpx.Client
    token: str
    limit: int = 100
    cursors: dict[str, str] = field(default_factory=dict)  # class key -> the last page's next_cursor
    members: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # class -> e-mail -> item
    received: list[dict[str, Any]] = field(default_factory=list)  # every change handed out, in order

    def enrollments(self, key: str, **params: Any) -> httpx.Response:
        """One raw request to the class's changes (this platform's token)."""
        return self.client.get(
            f"/api/v1/classes/{key}/enrollments", params=params, headers={"Authorization": f"Bearer {self.token}"}
        )

    def poll(self, key: str) -> list[dict[str, Any]]:
        """Every change since the last poll (all of them, the first time), applied; returns them."""
        new: list[dict[str, Any]] = []
        while True:
            params: dict[str, Any] = {"limit": self.limit}
            if key in self.cursors:
                params["cursor"] = self.cursors[key]
            response = self.enrollments(key, **params)
            response.raise_for_status()
            page = response.json()
            members = self.members.setdefault(key, {})
            for item in page["items"]:
                if item["removed"]:
                    members.pop(item["email"], None)
                else:
                    members[item["email"]] = item
            new += page["items"]
            self.cursors[key] = page["next_cursor"]
            if not page["has_more"]:
                self.received += new
                return new

    def emails(self, key: str) -> set[str]:
        return set(self.members.get(key, {}))
