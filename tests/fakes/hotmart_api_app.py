"""A fake Hotmart API (ASGI): the OAuth token endpoint, the subscriptions and the sales history.

FAKE, built from the documented format (``shared/reference/hotmart-api.md``), not from recorded
traffic. It serves a :class:`~tests.fakes.hotmart_store.HotmartStore` (the same filters and
defaults as :class:`~tests.fakes.hotmart_store.InMemoryHotmart`) and behaves as Hotmart documents:

* ``POST /security/oauth/token?grant_type=client_credentials&client_id=..&client_secret=..`` with
  ``Authorization: Basic <base64(id:secret)>`` issues opaque tokens that expire after
  ``token_seconds``; an expired or unknown token gets 401 ``invalid_token``;
* ``GET /payments/api/v1/subscriptions`` and ``GET /payments/api/v1/sales/history``: cursor pages
  (``max_results`` up to 500, ``page_token``; an invented or foreign token is a 400);
* 500 requests a minute (``limit`` per ``window_seconds``) with the ``RateLimit-Limit``,
  ``RateLimit-Remaining``, ``RateLimit-Reset`` (and ``X-RateLimit-*-Minute``) headers on every
  reply, and 429 ``too_many_requests`` past it;
* on demand: queued failures (429 / 5xx / 401 ...), every token expired at once, and 502 for
  a date window wider than ``widest_window`` (Hotmart's 30 s database budget).

Where Hotmart documents no behaviour, the choice made here is marked ``ASSUMPTION``. Tests reach
the state in-process through ``app.state.fake`` (a :class:`FakeHotmartApi`); another process uses
the control endpoints: ``POST /_fake/subscriptions`` and ``/_fake/sales`` (the ``add_*`` helpers'
arguments as JSON), ``POST /_fake/failures`` (``{"status", "path_contains", "times", "headers"}``),
``POST /_fake/expire-tokens``, ``GET /_fake/state``.
"""

from __future__ import annotations

import base64
import itertools
import math
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connectors.hotmart_api import SALE_STATUSES, SALES_HISTORY, SUBSCRIPTION_STATUSES, SUBSCRIPTIONS, epoch_ms
from tests.fakes.hotmart_store import DEFAULT_WINDOW, HotmartStore

TOKEN_PATH = "/security/oauth/token"
CLIENT_ID = "fake-client-id"
CLIENT_SECRET = "fake-client-secret-0123456789"
DEFAULT_PAGE_SIZE = 10  # ASSUMPTION: Hotmart's default max_results is undocumented
MAX_PAGE_SIZE = 500


def basic_token(client_id: str = CLIENT_ID, client_secret: str = CLIENT_SECRET) -> str:
    """The "Basic" token Hotmart shows beside the credentials: base64 of ``id:secret``."""
    return base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()


class FakeTime:
    """A monotonic clock that only sleeping moves: hand ``clock`` to the fake and ``clock``/``sleep``
    to the client, and every wait the rate limit imposes is counted (``slept``) without being spent."""

    def __init__(self, start: float = 0.0):
        self.now = start
        self.slept: list[float] = []
        self._lock = threading.Lock()

    def clock(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            self.now += max(seconds, 0.0)


class BadQuery(Exception):
    """A query Hotmart answers 400 (a malformed date, an unknown status, an invented page token)."""


@dataclass
class FakeHotmartApi:
    """The fake's account, tokens, rate limit and failures; tests seed and inspect it directly."""

    store: HotmartStore = field(default_factory=HotmartStore)
    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET
    token_seconds: float = 172_800  # ASSUMPTION: Hotmart's tokens were seen to last two days
    limit: int = 500
    window_seconds: float = 60.0
    clock: Callable[[], float] = time.monotonic
    widest_window: timedelta | None = None  # wider date windows answer 502

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.tokens: dict[str, float] = {}  # token -> expires at (clock)
        self.page_tokens: dict[str, tuple[str, tuple[tuple[str, str], ...], int]] = {}  # -> path, query, offset
        self.failures: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str, list[tuple[str, str]]]] = []  # (method, path, query) answered
        self.tokens_issued = 0
        self.rate_limited = 0  # 429s answered, injected ones included
        self._window: int | None = None
        self._used = 0
        self._ids = itertools.count(1)

    # ------------------------------------------------------------- on demand

    def fail(
        self,
        status: int,
        path_contains: str = "/payments/",
        *,
        times: int = 1,
        headers: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        """The next ``times`` API requests whose path contains ``path_contains`` answer ``status``."""
        default = {"error": "too_many_requests" if status == 429 else f"fake_{status}", "error_description": "fake"}
        self.failures.append(
            {"status": status, "path": path_contains, "times": times, "headers": headers or {}, "body": body or default}
        )

    def expire_tokens(self) -> None:
        """Every token issued so far is expired from now on (the next API call gets 401)."""
        with self.lock:
            self.tokens = dict.fromkeys(self.tokens, float("-inf"))

    def queries(self, path: str) -> list[dict[str, list[str]]]:
        """The queries answered on ``path``, each as ``{key: [values]}``."""
        found = []
        for _, answered, query in self.requests:
            if answered == path:
                params: dict[str, list[str]] = {}
                for key, value in query:
                    params.setdefault(key, []).append(value)
                found.append(params)
        return found

    # ------------------------------------------------------------- guards

    def issue_token(self) -> str:
        token = base64.urlsafe_b64encode(secrets.token_bytes(48)).decode().rstrip("=")  # opaque, as Hotmart's
        with self.lock:
            self.tokens[token] = self.clock() + self.token_seconds
            self.tokens_issued += 1
        return token

    def token_state(self, authorization: str | None) -> str:
        """ok | missing | invalid | expired."""
        if not authorization or not authorization.startswith("Bearer "):
            return "missing"
        expires = self.tokens.get(authorization[len("Bearer ") :])
        if expires is None:
            return "invalid"
        return "ok" if self.clock() < expires else "expired"

    def take_budget(self) -> tuple[bool, dict[str, str]]:
        """One request of the current window; its rate-limit headers.
        ASSUMPTION: windows are aligned to the clock's minute, as an API gateway counts them."""
        now = self.clock()
        window = math.floor(now / self.window_seconds)
        if window != self._window:
            self._window, self._used = window, 0
        allowed = self._used < self.limit
        if allowed:
            self._used += 1
        remaining = self.limit - self._used
        reset = max(1, math.ceil((window + 1) * self.window_seconds - now))
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(remaining),
            "RateLimit-Reset": str(reset),
            "X-RateLimit-Limit-Minute": str(self.limit),
            "X-RateLimit-Remaining-Minute": str(remaining),
        }
        if not allowed:
            self.rate_limited += 1
        return allowed, headers

    def take_failure(self, path: str) -> dict[str, Any] | None:
        for failure in self.failures:
            if failure["path"] in path and failure["times"] > 0:
                failure["times"] -= 1
                if failure["status"] == 429:
                    self.rate_limited += 1
                return failure
        return None

    # ------------------------------------------------------------- pages

    def page(self, path: str, query: QueryParams) -> dict[str, Any]:
        """One page of ``path``'s answer to ``query``."""
        size = _integer(query, "max_results", DEFAULT_PAGE_SIZE)
        if not 1 <= size <= MAX_PAGE_SIZE:
            raise BadQuery(f"max_results must be between 1 and {MAX_PAGE_SIZE}")
        signature = tuple(sorted((k, v) for k, v in query.multi_items() if k not in ("page_token", "max_results")))
        offset = 0
        if token := query.get("page_token"):
            known = self.page_tokens.get(token)
            if known is None or known[:2] != (path, signature):
                raise BadQuery("Invalid page_token")
            offset = known[2]
        items = self.subscriptions(query) if path == SUBSCRIPTIONS else self.sales(query)
        page_info: dict[str, Any] = {"total_results": len(items), "results_per_page": size}
        if offset + size < len(items):
            next_token = f"{next(self._ids):04d}{secrets.token_hex(10)}"
            self.page_tokens[next_token] = (path, signature, offset + size)
            page_info["next_page_token"] = next_token
        if offset:
            page_info["prev_page_token"] = token
        return {"items": items[offset : offset + size], "page_info": page_info}

    def subscriptions(self, query: QueryParams) -> list[dict[str, Any]]:
        statuses = query.getlist("status")
        for status in statuses:
            if status not in SUBSCRIPTION_STATUSES:
                raise BadQuery(f"Invalid status: {status}")
        accession_from = _ms(query, "accession_date")
        accession_to = _ms(query, "end_accession_date")
        self._check_width(accession_from, accession_to, default_from=DEFAULT_WINDOW)
        return self.store.find_subscriptions(
            product_id=query.get("product_id"),
            statuses=statuses,
            accession_from=accession_from,
            accession_to=accession_to,
            cancelled_from=_ms(query, "cancelation_date"),
            cancelled_to=_ms(query, "end_cancelation_date"),
            subscriber_email=query.get("subscriber_email"),
            subscriber_code=query.get("subscriber_code"),
            transaction=query.get("transaction"),
        )

    def sales(self, query: QueryParams) -> list[dict[str, Any]]:
        statuses = query.getlist("transaction_status")
        if len(statuses) > 1:  # ASSUMPTION: documented as one value; a repeated key is refused
            raise BadQuery("transaction_status takes one value")
        if statuses and statuses[0] not in SALE_STATUSES:
            raise BadQuery(f"Invalid transaction_status: {statuses[0]}")
        start, end = _ms(query, "start_date"), _ms(query, "end_date")
        self._check_width(start, end, default_from=None)
        return self.store.find_sales(
            product_id=query.get("product_id"),
            start=start,
            end=end,
            status=statuses[0] if statuses else None,
            buyer_email=query.get("buyer_email"),
            transaction=query.get("transaction"),
        )

    def _check_width(self, start: int | None, end: int | None, *, default_from: timedelta | None) -> None:
        if self.widest_window is None:
            return
        now = epoch_ms(self.store.now())
        if start is None:
            if default_from is None:
                return
            start = now - int(default_from.total_seconds() * 1000)
        if (end if end is not None else now) - start > self.widest_window.total_seconds() * 1000:
            raise TooWide


class TooWide(Exception):
    """A window Hotmart's database cannot read within its budget: 502."""


def _integer(query: QueryParams, key: str, default: int) -> int:
    value = query.get(key)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise BadQuery(f"{key} must be a number") from None


def _ms(query: QueryParams, key: str) -> int | None:
    return None if query.get(key) is None else _integer(query, key, 0)


def _error(status: int, error: str, description: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status, headers=headers)


def create_app(fake: FakeHotmartApi | None = None, **options: Any) -> Starlette:
    """The fake's app; ``options`` are :class:`FakeHotmartApi`'s fields when no ``fake`` is given."""
    fake = fake or FakeHotmartApi(**options)

    async def token(request: Request) -> Response:
        query = request.query_params
        expected = f"Basic {basic_token(fake.client_id, fake.client_secret)}"
        if request.headers.get("authorization") != expected:
            return _error(401, "unauthorized", "Full authentication is required")  # ASSUMPTION: the text
        if query.get("grant_type") != "client_credentials":
            return _error(400, "unsupported_grant_type", "Unsupported grant type")
        if query.get("client_id") != fake.client_id or query.get("client_secret") != fake.client_secret:
            return _error(401, "invalid_client", "Bad client credentials")
        access = fake.issue_token()
        return JSONResponse(
            {
                "access_token": access,
                "token_type": "bearer",
                "expires_in": int(fake.token_seconds),
                "scope": "read write",
                "jti": secrets.token_hex(16),
            }
        )

    async def api(request: Request) -> Response:
        path = request.url.path
        with fake.lock:
            allowed, headers = fake.take_budget()
            if not allowed:
                return _error(429, "too_many_requests", "API rate limit exceeded", headers)
            state = fake.token_state(request.headers.get("authorization"))
            if state != "ok":
                description = {"expired": "Access token expired"}.get(state, "Invalid access token")
                return _error(401, "invalid_token", description, headers)
            failure = fake.take_failure(path)
            if failure is not None:
                return JSONResponse(failure["body"], failure["status"], headers={**headers, **failure["headers"]})
            try:
                body = fake.page(path, request.query_params)
            except BadQuery as exc:
                return _error(400, "invalid_parameter", str(exc), headers)
            except TooWide:
                return _error(502, "bad_gateway", "The upstream server did not answer in time", headers)
            fake.requests.append(("GET", path, list(request.query_params.multi_items())))
        return JSONResponse(body, headers=headers)

    async def control(request: Request) -> Response:
        what = request.path_params["what"]
        if request.method == "GET" and what == "state":
            return JSONResponse(
                {
                    "subscriptions": fake.store.all_subscriptions(),
                    "sales": fake.store.all_sales(),
                    "tokens_issued": fake.tokens_issued,
                    "rate_limited": fake.rate_limited,
                    "requests": len(fake.requests),
                }
            )
        body = await request.json() if await request.body() else {}
        if what == "subscriptions":
            return JSONResponse(fake.store.add_subscription(**body))
        if what == "sales":
            return JSONResponse(fake.store.add_sale(**body))
        if what == "failures":
            fake.fail(
                int(body["status"]),
                body.get("path_contains", "/payments/"),
                times=int(body.get("times", 1)),
                headers=body.get("headers"),
            )
        elif what == "expire-tokens":
            fake.expire_tokens()
        else:
            return JSONResponse({"error": f"unknown control {what!r}"}, 404)
        return JSONResponse({"ok": True})

    app = Starlette(
        routes=[
            Route(TOKEN_PATH, token, methods=["POST"]),
            Route(SUBSCRIPTIONS, api, methods=["GET"]),
            Route(SALES_HISTORY, api, methods=["GET"]),
            Route("/_fake/{what}", control, methods=["GET", "POST"]),
        ]
    )
    app.state.fake = fake
    return app
