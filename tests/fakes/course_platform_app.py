"""A fake course platform (ASGI) that receives the engine's class webhooks, for tests and local runs.

It does what the docs tell a real platform to do (docs/operations/course-platform.md): verify the
Standard Webhooks signature with the off-the-shelf ``standardwebhooks`` library (a bad signature,
an old timestamp or a missing header is a 401), act once per ``webhook-id`` (a repeat answers 200
and changes nothing), keep its own enrollments, and serve them to the engine's signed reads as the
contract of "Reconcile against the platform" says (``GET ?class=&cursor=``, paged).

Tests reach the state in-process through ``app.state.fake`` (a :class:`FakeCoursePlatform`);
another process uses the control endpoints:

* ``POST /webhooks``: the engine's messages (``COURSE_WEBHOOK_URL`` points here)
* ``GET /enrollments?class=<key>&cursor=<next_cursor>``: a class's enrollments, ``page_size`` a page
  (``COURSE_ENROLLMENTS_URL`` points here); signed like a message, over an empty body
* ``POST /_fake/failures`` ``{"status": 503, "times": 1}`` (``times`` 0: until cleared): the next
  requests, messages and reads alike, answer ``status``; ``DELETE /_fake/failures``
* ``POST /_fake/lose`` / ``POST /_fake/enroll`` ``{"class": ..., "email": ...}``: an enrollment the
  platform lost, or one someone made by hand (no message)
* ``GET /_fake/state``; ``POST /_fake/reset``
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

SECRET = "whsec_dGhlLWNvdXJzZS1wbGF0Zm9ybXMtdGVzdC1zZWNyZXQ="  # base64 of a 32-byte test key
PAGE_SIZE = 50
CREATED, DELETED = "class.enrollment.created", "class.enrollment.deleted"


def verifier(secret: str) -> Webhook:
    """The library's verifier for a secret as the engine reads it: ``whsec_<base64>`` is decoded by the
    library itself; any other secret is its UTF-8 bytes (the library would base64-decode a text)."""
    return Webhook(secret if secret.startswith("whsec_") else secret.encode())


@dataclass
class Delivery:
    """One request that reached ``/webhooks``, and what the fake made of it."""

    webhook_id: str | None
    timestamp: str | None
    body: bytes
    verified: bool
    status: int  # what the fake answered
    duplicate: bool = False
    message: dict[str, Any] | None = None  # the parsed body, when verified


@dataclass
class Read:
    """One request that reached ``/enrollments``, and what the fake answered."""

    webhook_id: str | None
    params: dict[str, str]
    verified: bool
    status: int


@dataclass
class FakeCoursePlatform:
    secret: str
    page_size: int = PAGE_SIZE
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.deliveries: list[Delivery] = []
        self.reads: list[Read] = []
        self.seen: set[str] = set()  # webhook ids acted on
        # class key -> email -> the message's data (the platform's own record of who is in)
        self.enrollments: dict[str, dict[str, dict[str, Any]]] = {}
        self.failures: list[dict[str, int]] = []  # {"status", "times" (0: forever)}

    # -- control ------------------------------------------------------------------------------

    def fail(self, status: int = 503, times: int = 1) -> None:
        """Answer the next ``times`` messages (0: every one, until :meth:`recover`) with ``status``."""
        with self.lock:
            self.failures.append({"status": status, "times": times})

    def recover(self) -> None:
        with self.lock:
            self.failures.clear()

    def lose(self, class_key: str, email: str) -> None:
        """The platform loses an enrollment (a bad migration, a slip in its admin): no message."""
        with self.lock:
            self.enrollments.get(class_key, {}).pop(email, None)

    def enroll_by_hand(self, class_key: str, email: str) -> None:
        """Someone enrolls a student on the platform itself: the engine gave nothing."""
        with self.lock:
            self.enrollments.setdefault(class_key, {})[email] = {"email": email, "class_key": class_key}

    def members(self, class_key: str) -> set[str]:
        with self.lock:
            return set(self.enrollments.get(class_key, {}))

    def accepted(self) -> list[Delivery]:
        """The verified messages acted on (duplicates and failures left out), in order."""
        with self.lock:
            return [d for d in self.deliveries if d.verified and d.status == 200 and not d.duplicate]

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "enrollments": {key: sorted(members) for key, members in self.enrollments.items()},
                "deliveries": [
                    {"webhook_id": d.webhook_id, "verified": d.verified, "status": d.status, "duplicate": d.duplicate}
                    for d in self.deliveries
                ],
                "reads": [{"params": r.params, "verified": r.verified, "status": r.status} for r in self.reads],
            }

    # -- the platform ------------------------------------------------------------------------

    def _failure(self) -> int | None:
        for failure in self.failures:
            if failure["times"] == 0:
                return failure["status"]
            failure["times"] -= 1
            status = failure["status"]
            if failure["times"] == 0:
                self.failures.remove(failure)
            return status
        return None

    def receive(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        delivery = Delivery(headers.get("webhook-id"), headers.get("webhook-timestamp"), body, False, 401)
        with self.lock:
            self.deliveries.append(delivery)
            try:
                message = verifier(self.secret).verify(body, headers)
            except WebhookVerificationError as exc:
                return 401, {"error": f"signature: {exc}"}
            delivery.verified, delivery.message = True, message
            failure = self._failure()
            if failure is not None:
                delivery.status = failure
                return failure, {"error": "failing on demand"}
            delivery.status = 200
            if delivery.webhook_id in self.seen:
                delivery.duplicate = True
                return 200, {"duplicate": True}
            data = message.get("data") or {}
            members = self.enrollments.setdefault(str(data.get("class_key")), {})
            if message.get("type") == CREATED:
                members[str(data.get("email"))] = data
            elif message.get("type") == DELETED:
                members.pop(str(data.get("email")), None)
            else:
                delivery.status = 422
                return 422, {"error": f"unknown type {message.get('type')!r}"}
            self.seen.add(delivery.webhook_id or "")
            return 200, {"ok": True}

    def serve_enrollments(self, params: dict[str, str], headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """A page of a class's enrollments, in e-mail order; ``next_cursor`` the next page's offset."""
        read = Read(headers.get("webhook-id"), params, False, 401)
        with self.lock:
            self.reads.append(read)
            try:  # a read has no body: the signature is over "id.timestamp." and nothing else
                verifier(self.secret).verify(b"", headers, json_parse=False)
            except WebhookVerificationError as exc:
                return 401, {"error": f"signature: {exc}"}
            read.verified = True
            failure = self._failure()
            if failure is not None:
                read.status = failure
                return failure, {"error": "failing on demand"}
            key, cursor = params.get("class", ""), params.get("cursor") or "0"
            if not key or not cursor.isdigit():
                read.status = 400
                return 400, {"error": "class is required; cursor is a next_cursor this platform gave"}
            start = int(cursor)
            rows = sorted(self.enrollments.get(key, {}).values(), key=lambda data: str(data.get("email")))
            page = rows[start : start + self.page_size]
            more = start + self.page_size < len(rows)
            read.status = 200
            return 200, {
                "enrollments": [{"student_id": row.get("student_id"), "email": row.get("email")} for row in page],
                "next_cursor": str(start + self.page_size) if more else None,
            }


def create_app(*, secret: str = SECRET, page_size: int = PAGE_SIZE) -> Starlette:
    fake = FakeCoursePlatform(secret, page_size)

    async def webhooks(request: Request) -> Response:
        status, body = fake.receive(await request.body(), dict(request.headers))
        return JSONResponse(body, status_code=status)

    async def enrollments(request: Request) -> Response:
        status, body = fake.serve_enrollments(dict(request.query_params), dict(request.headers))
        return JSONResponse(body, status_code=status)

    async def control(request: Request) -> Response:
        what = request.path_params["what"]
        if what == "state" and request.method == "GET":
            return JSONResponse(fake.snapshot())
        if what == "reset" and request.method == "POST":
            with fake.lock:
                fake.reset()
            return JSONResponse({"ok": True})
        if what == "failures" and request.method == "POST":
            body = await request.json()
            fake.fail(int(body.get("status", 503)), int(body.get("times", 1)))
            return JSONResponse({"ok": True})
        if what == "failures" and request.method == "DELETE":
            fake.recover()
            return JSONResponse({"ok": True})
        if what in ("lose", "enroll") and request.method == "POST":
            body = await request.json()
            (fake.lose if what == "lose" else fake.enroll_by_hand)(str(body["class"]), str(body["email"]))
            return JSONResponse({"ok": True})
        return JSONResponse({"error": "unknown control"}, status_code=404)

    app = Starlette(
        routes=[
            Route("/webhooks", webhooks, methods=["POST"]),
            Route("/enrollments", enrollments, methods=["GET"]),
            Route("/_fake/{what}", control, methods=["GET", "POST", "DELETE"]),
        ]
    )
    app.state.fake = fake
    return app
