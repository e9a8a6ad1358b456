"""A fake ManyChat Page API (ASGI) for tests and local runs.

Tests reach the state in-process through ``app.state.fake`` (a :class:`FakeManyChat`);
anything else (a local demo, another process) uses the control endpoints under
``/_fake/``. Wire shapes follow ``shared/reference/manychat.md``; where ManyChat does
not document a reply, the body used here is marked ``ASSUMPTION``.

Control endpoints (no auth):

* ``POST /_fake/subscribers`` ``{"email", "whatsapp_phone", "first_name", ...}`` -> subscriber
* ``PUT /_fake/subscribers/{id}/tags`` ``{"tags": [...]}`` (a tag added or removed by hand)
* ``POST /_fake/tags`` ``{"names": [...]}``; ``POST /_fake/fields`` ``{"fields": [{"name", "type"}]}``
  or ``{"names": [...]}``; ``POST /_fake/flows`` ``{"flows": [{"ns", "name"}]}``
* ``POST /_fake/failures`` ``{"status": 500|429|..., "path_contains": "addTag", "times": 1,
  "body": {...}, "headers": {...}}``
* ``POST /_fake/timeouts`` ``{"path_contains": "sendFlow", "seconds": 2.0}``
* ``GET /_fake/state``; ``POST /_fake/reset``
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

# Requests per second per endpoint class (manychat.md section 3).
DEFAULT_LIMITS: dict[str, float] = {
    "page_info": 100,  # /fb/page/getInfo, /fb/page/getTags
    "find": 50,  # /fb/subscriber/findBySystemField
    "send_content": 25,
    "send_flow": 20,
    "default": 10,  # everything else, getCustomFields and getFlows included
    "flows_per_subscriber_hour": 100,
}

# ASSUMPTION: ManyChat documents no 429 body; this is what its clients expect.
TOO_MANY = {"status": "error", "message": "Too many requests"}
# ASSUMPTION: the not-found reply is undocumented (clients see non-success / empty data).
SUBSCRIBER_NOT_FOUND = {"status": "error", "message": "Subscriber not found"}


def _endpoint_class(path: str) -> str:
    if path in ("/fb/page/getInfo", "/fb/page/getTags"):
        return "page_info"
    if path == "/fb/subscriber/findBySystemField":
        return "find"
    if path.startswith("/fb/sending/sendContent"):
        return "send_content"
    if path == "/fb/sending/sendFlow":
        return "send_flow"
    return "default"


class _Bucket:
    """Non-blocking token bucket: a server refuses instead of waiting."""

    def __init__(self, rate: float, clock: Callable[[], float]):
        self.rate, self.capacity, self.tokens = rate, rate, rate
        self.clock = clock
        self.updated = clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


@dataclass
class FakeSubscriber:
    id: str
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    whatsapp_phone: str | None = None
    phone: str | None = None
    optin_whatsapp: bool = True
    optin_email: bool = False
    tags: set[str] = field(default_factory=set)
    fields: dict[str, Any] = field(default_factory=dict)

    def to_wire(self, fake: FakeManyChat) -> dict[str, Any]:
        name = " ".join(part for part in (self.first_name, self.last_name) if part)
        return {
            "id": self.id,
            "page_id": "100000000000001",
            "status": "active",
            "first_name": self.first_name,
            "last_name": self.last_name,
            "name": name or None,
            "email": self.email,
            "phone": self.phone,
            "optin_email": self.optin_email,
            "whatsapp_phone": self.whatsapp_phone,
            "optin_whatsapp": self.optin_whatsapp,
            "last_interaction": None,
            "custom_fields": [
                {
                    **fake.fields.get(key, {"id": None, "name": key, "type": "text"}),
                    "description": "",
                    "value": value,
                }
                for key, value in sorted(self.fields.items())
            ],
            "tags": [{"id": fake.tags.get(name), "name": name} for name in sorted(self.tags)],
        }


@dataclass
class FakeManyChat:
    """The whole fake account; tests seed and inspect it directly."""

    token: str = "test-token"
    limits: dict[str, float] = field(default_factory=dict)
    clock: Callable[[], float] = time.monotonic
    # ASSUMPTION: whether phone= matches a WhatsApp-only contact is unknown ([U]).
    phone_lookup_matches_whatsapp: bool = True

    def __post_init__(self) -> None:
        self.limits = {**DEFAULT_LIMITS, **self.limits}
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.subscribers: dict[str, FakeSubscriber] = {}
        self.tags: dict[str, int] = {}  # name -> id
        self.fields: dict[str, dict[str, Any]] = {}  # lower-cased name -> {"id","name","type"}
        self.flows: dict[str, str] = {}  # ns -> name
        self.flows_sent: list[tuple[str, str, float]] = []  # (subscriber_id, flow_ns, time)
        self.failures: list[dict[str, Any]] = []
        self.timeouts: dict[str, float] = {}  # path substring -> seconds to stall
        self.requests: list[tuple[str, str]] = []  # (method, path) after auth
        self.rate_limited = 0  # 429s answered
        self._ids = itertools.count(900000001)
        self._small_ids = itertools.count(11)
        self._buckets: dict[str, _Bucket] = {}

    # ------------------------------------------------------------- seeding

    def seed_subscriber(self, **attrs: Any) -> FakeSubscriber:
        sid = str(attrs.pop("id", None) or next(self._ids))
        tags = set(attrs.pop("tags", ()))
        fields = dict(attrs.pop("fields", {}))
        sub = FakeSubscriber(id=sid, tags=tags, fields=fields, **attrs)
        self.subscribers[sid] = sub
        return sub

    def seed_tags(self, *names: str) -> None:
        for name in names:
            self.tags.setdefault(name, next(self._small_ids))

    def seed_fields(self, *names: str, type: str = "text") -> None:
        for name in names:
            self.fields.setdefault(name.lower(), {"id": next(self._small_ids), "name": name, "type": type})

    def seed_flows(self, flows: dict[str, str]) -> None:
        """``{flow_ns: name}``."""
        self.flows.update(flows)

    def queue_failure(
        self,
        status: int,
        path_contains: str,
        *,
        times: int = 1,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.failures.append(
            {
                "status": status,
                "path_contains": path_contains,
                "times": times,
                "body": body or {"status": "error", "message": f"Fake failure {status}"},
                "headers": headers or {},
            }
        )

    def stall(self, path_contains: str, seconds: float) -> None:
        """Answer matching paths only after ``seconds`` (longer than the client timeout)."""
        self.timeouts[path_contains] = seconds

    # ------------------------------------------------------------- queries

    def find(self, *, email: str | None = None, phone: str | None = None) -> FakeSubscriber | None:
        for sub in self.subscribers.values():
            if email and sub.email and sub.email.lower() == email.lower():
                return sub
            if phone and (sub.phone == phone or (self.phone_lookup_matches_whatsapp and sub.whatsapp_phone == phone)):
                return sub
        return None

    def snapshot(self) -> dict[str, Any]:
        return {
            "subscribers": {sid: sub.to_wire(self) for sid, sub in self.subscribers.items()},
            "tags": dict(self.tags),
            "fields": list(self.fields.values()),
            "flows": dict(self.flows),
            "flows_sent": [list(item) for item in self.flows_sent],
            "rate_limited": self.rate_limited,
            "requests": [list(item) for item in self.requests],
        }

    # ----------------------------------------------------- request guards

    def take_rate(self, path: str) -> bool:
        # ManyChat's ceilings are per endpoint: each path has its own bucket at its class's rate.
        bucket = self._buckets.get(path)
        if bucket is None:
            bucket = self._buckets[path] = _Bucket(float(self.limits[_endpoint_class(path)]), self.clock)
        if bucket.take():
            return True
        self.rate_limited += 1
        return False

    def take_failure(self, path: str) -> dict[str, Any] | None:
        for failure in self.failures:
            if failure["path_contains"] in path and failure["times"] > 0:
                failure["times"] -= 1
                return failure
        return None

    def stall_for(self, path: str) -> float:
        return next((s for part, s in self.timeouts.items() if part in path), 0.0)


# ---------------------------------------------------------------- responses


def _ok(data: Any = None) -> JSONResponse:
    return JSONResponse({"status": "success"} if data is None else {"status": "success", "data": data})


def _error(message: str, status: int = 400, **extra: Any) -> JSONResponse:
    return JSONResponse({"status": "error", "message": message, **extra}, status_code=status)


def _validation(*messages: str) -> JSONResponse:
    return _error("Validation error", details={"messages": [{"message": text} for text in messages]})


async def _json_body(request: Request) -> dict[str, Any] | None:
    try:
        body = await request.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def create_app(*, token: str = "test-token", limits: dict | None = None) -> Starlette:
    fake = FakeManyChat(token=token, limits=dict(limits or {}))

    def subscriber_of(body: dict[str, Any]) -> FakeSubscriber | None:
        return fake.subscribers.get(str(body.get("subscriber_id", "")))

    # ------------------------------------------------------------ Page API

    async def find_by_system_field(request: Request) -> Response:
        email, phone = request.query_params.get("email"), request.query_params.get("phone")
        if bool(email) == bool(phone):
            return _validation("Exactly one of email or phone is required")
        sub = fake.find(email=email, phone=phone)
        if sub is None:
            return JSONResponse(SUBSCRIBER_NOT_FOUND, status_code=400)
        return _ok(sub.to_wire(fake))

    async def get_info(request: Request) -> Response:
        sub = fake.subscribers.get(request.query_params.get("subscriber_id", ""))
        if sub is None:
            return JSONResponse(SUBSCRIBER_NOT_FOUND, status_code=400)
        return _ok(sub.to_wire(fake))

    async def create_subscriber(request: Request) -> Response:
        body = await _json_body(request)
        if body is None:
            return _validation("Body must be a JSON object")
        email, wa, phone = body.get("email"), body.get("whatsapp_phone"), body.get("phone")
        if not (email or wa or phone):
            return _validation("One of phone, whatsapp_phone or email is required")
        if email and "has_opt_in_email" not in body:
            return _validation("The has_opt_in_email field is required when email is present.")
        if phone and "has_opt_in_sms" not in body:
            return _validation("The has_opt_in_sms field is required when phone is present.")
        if body.get("has_opt_in_sms") and not body.get("consent_phrase"):
            return _validation("The consent_phrase field is required.")
        for sub in fake.subscribers.values():
            if (wa and sub.whatsapp_phone == wa) or (email and sub.email and sub.email.lower() == email.lower()):
                # ASSUMPTION: exact text unknown; clients match "already exist".
                return _error("Subscriber with this whatsapp phone or email already exists")
        sub = fake.seed_subscriber(
            first_name=body.get("first_name"),
            last_name=body.get("last_name"),
            email=email,
            whatsapp_phone=wa,
            phone=phone,
            optin_whatsapp=bool(body.get("has_opt_in_whatsapp", False)),
            optin_email=bool(body.get("has_opt_in_email", False)),
        )
        return _ok(sub.to_wire(fake))

    def tag_endpoint(add: bool):
        async def handler(request: Request) -> Response:
            body = await _json_body(request) or {}
            name = body.get("tag_name")
            if not body.get("subscriber_id") or not name:
                return _validation("subscriber_id and tag_name are required")
            sub = subscriber_of(body)
            if sub is None:
                return JSONResponse(SUBSCRIBER_NOT_FOUND, status_code=400)
            if name not in fake.tags:
                # ASSUMPTION: the missing-tag reply is undocumented.
                return _error(f'Tag "{name}" not found')
            # Set semantics: adding a present tag / removing an absent one succeeds.
            (sub.tags.add if add else sub.tags.discard)(name)
            return _ok()

        return handler

    async def set_custom_field_by_name(request: Request) -> Response:
        body = await _json_body(request) or {}
        name = body.get("field_name")
        if not body.get("subscriber_id") or not name or "field_value" not in body:
            return _validation("subscriber_id, field_name and field_value are required")
        sub = subscriber_of(body)
        if sub is None:
            return JSONResponse(SUBSCRIBER_NOT_FOUND, status_code=400)
        if name.lower() not in fake.fields:  # names match case-insensitively
            # ASSUMPTION: the missing-field reply is undocumented.
            return _error(f'Field "{name}" not found')
        sub.fields[name.lower()] = body["field_value"]
        return _ok()

    async def send_flow(request: Request) -> Response:
        body = await _json_body(request) or {}
        if set(body) != {"subscriber_id", "flow_ns"}:
            return _validation("Body must be exactly subscriber_id and flow_ns")
        sub = subscriber_of(body)
        if sub is None:
            return JSONResponse(SUBSCRIBER_NOT_FOUND, status_code=400)
        ns = body["flow_ns"]
        if ns not in fake.flows:
            # ASSUMPTION: the missing-flow reply is undocumented.
            return _error(f'Flow "{ns}" not found')
        if not sub.optin_whatsapp:
            return _validation("Subscriber has no WhatsApp opt-in")  # seen by one client [S]
        hour_ago = fake.clock() - 3600
        recent = [1 for sid, _, at in fake.flows_sent if sid == sub.id and at > hour_ago]
        if len(recent) >= fake.limits["flows_per_subscriber_hour"]:
            fake.rate_limited += 1
            return JSONResponse(TOO_MANY, status_code=429)  # ASSUMPTION, as for every 429
        fake.flows_sent.append((sub.id, ns, fake.clock()))
        return _ok()

    async def page_info(request: Request) -> Response:
        return _ok({"id": 1000001, "name": "Curso Exemplo", "category": "Education", "timezone": "America/Sao_Paulo"})

    async def get_tags(request: Request) -> Response:
        return _ok([{"id": tag_id, "name": name} for name, tag_id in fake.tags.items()])

    async def get_custom_fields(request: Request) -> Response:
        return _ok([{**spec, "description": ""} for spec in fake.fields.values()])

    async def get_flows(request: Request) -> Response:
        flows = [{"ns": ns, "name": name, "folder_id": None} for ns, name in fake.flows.items()]
        return _ok({"flows": flows, "folders": []})

    api: dict[tuple[str, str], Callable[[Request], Any]] = {
        ("GET", "/fb/subscriber/findBySystemField"): find_by_system_field,
        ("GET", "/fb/subscriber/getInfo"): get_info,
        ("POST", "/fb/subscriber/createSubscriber"): create_subscriber,
        ("POST", "/fb/subscriber/addTagByName"): tag_endpoint(add=True),
        ("POST", "/fb/subscriber/removeTagByName"): tag_endpoint(add=False),
        ("POST", "/fb/subscriber/setCustomFieldByName"): set_custom_field_by_name,
        ("POST", "/fb/sending/sendFlow"): send_flow,
        ("GET", "/fb/page/getInfo"): page_info,
        ("GET", "/fb/page/getTags"): get_tags,
        ("GET", "/fb/page/getCustomFields"): get_custom_fields,
        ("GET", "/fb/page/getFlows"): get_flows,
    }

    async def page_api(request: Request) -> Response:
        path = request.url.path
        handler = api.get((request.method, path))
        if handler is None:
            # ManyChat answers unknown paths with a big HTML page, not JSON.
            return Response("<html><body><h1>404 Not Found</h1></body></html>", 404, media_type="text/html")
        auth = request.headers.get("authorization")
        if not auth:
            return _error("Token is required", 401)
        if auth != f"Bearer {fake.token}":
            return _error("Wrong token", 401)
        with fake.lock:
            if not fake.take_rate(path):
                return JSONResponse(TOO_MANY, status_code=429)
            fake.requests.append((request.method, path))
            failure = fake.take_failure(path)
            stall = fake.stall_for(path)
        if failure is not None:
            if failure["status"] == 429:
                fake.rate_limited += 1
            return JSONResponse(failure["body"], failure["status"], headers=failure["headers"])
        if stall:
            # Do the work first, then stall: a sendFlow that "times out" was still sent.
            response = await handler(request)
            await asyncio.sleep(stall)
            return response
        return await handler(request)

    # ------------------------------------------------------- control plane

    async def control(request: Request) -> Response:
        what = request.path_params["what"]
        if request.method == "GET" and what == "state":
            return JSONResponse(fake.snapshot())
        body = await _json_body(request) or {}
        if what == "reset":
            fake.reset()
        elif what == "subscribers":
            return JSONResponse(fake.seed_subscriber(**body).to_wire(fake))
        elif what == "tags":
            fake.seed_tags(*body.get("names", []))
        elif what == "fields":
            for spec in body.get("fields", []):
                fake.seed_fields(spec["name"], type=spec.get("type", "text"))
            fake.seed_fields(*body.get("names", []))
        elif what == "flows":
            fake.seed_flows({item["ns"]: item.get("name", item["ns"]) for item in body["flows"]})
        elif what == "failures":
            fake.queue_failure(
                int(body["status"]),
                body["path_contains"],
                times=int(body.get("times", 1)),
                body=body.get("body"),
                headers=body.get("headers"),
            )
        elif what == "timeouts":
            fake.stall(body["path_contains"], float(body.get("seconds", 30.0)))
        else:
            return JSONResponse({"error": f"unknown control {what!r}"}, 404)
        return JSONResponse({"ok": True})

    async def subscriber_tags(request: Request) -> Response:
        sub = fake.subscribers.get(request.path_params["subscriber_id"])
        if sub is None:
            return JSONResponse({"error": "unknown subscriber"}, 404)
        sub.tags = set((await _json_body(request) or {}).get("tags", []))
        return JSONResponse(sub.to_wire(fake))

    app = Starlette(
        routes=[
            Route("/_fake/subscribers/{subscriber_id}/tags", subscriber_tags, methods=["PUT"]),
            Route("/_fake/{what}", control, methods=["GET", "POST"]),
            Route("/{path:path}", page_api, methods=["GET", "POST"]),
        ]
    )
    app.state.fake = fake
    return app
