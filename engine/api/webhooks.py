"""``POST /webhooks/hotmart``: verify, store, acknowledge. No outbound call here.

Hotmart disables a URL that keeps failing, so only a problem a redelivery can fix (the
database is down) gets a 5xx; everything else is stored and answered 200/400/401.
"""

from __future__ import annotations

import logging
import time

from anyio import CapacityLimiter, to_thread
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from engine import metrics
from engine.api.deps import RuntimeDep
from engine.pipeline.intake import store_hotmart, store_rejected
from engine.pipeline.runtime import Runtime
from engine.pipeline.storable import NotJSON, decode
from engine.sources import hotmart
from engine.sources.hotmart.hottok import form_hottok

log = logging.getLogger(__name__)
router = APIRouter(tags=["webhooks"])


def _store_and_enqueue(rt: Runtime, body: bytes, decoded: object, headers: dict[str, str]):
    # A bare connection, not an ORM session: one insert, on the hot path.
    with rt.db.begin() as connection:
        stored = store_hotmart(connection, body, headers, held=not rt.settings.hotmart_enabled, decoded=decoded)
    if stored.status == "received" and not stored.duplicate:
        try:
            rt.queue.enqueue(stored.event_id)  # after the commit: the worker must find the row
        except Exception:  # noqa: BLE001 - stored is what matters; the sweep enqueues it later
            log.warning("could not enqueue event %s; the sweep will", stored.event_id, exc_info=True)
    return stored


_limiters: dict[int, CapacityLimiter] = {}


def _limiter(rt: Runtime) -> CapacityLimiter:
    """The webhook's own few threads: each holds a thread ~1 ms, and more threads mostly trade the
    GIL back and forth (measured: 3 per process is fastest on 2 cores). Admin routes use others."""
    key = id(rt)
    if key not in _limiters:
        _limiters[key] = CapacityLimiter(rt.settings.webhook_threads)
    return _limiters[key]


def _reject(rt: Runtime, body: bytes, headers: dict[str, str], reason: str) -> None:
    with rt.sessions.begin() as session:
        store_rejected(session, body, headers, reason)


class _TooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused as soon as it passes ``limit`` bytes, chunked or not (memory bounded):
    a declared Content-Length over the limit is refused before reading anything."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "/webhooks/hotmart",
    summary="Receive a Hotmart v2 webhook",
    responses={
        200: {"description": '`{"status": "accepted"}` or `{"status": "duplicate"}`'},
        400: {"description": "body is not JSON, or nests too deep (stored as rejected)"},
        401: {"description": "missing or wrong X-HOTMART-HOTTOK"},
        413: {"description": "body too large"},
        503: {"description": "could not store the event (database unavailable); Hotmart will redeliver"},
    },
    # Read as bytes (verified, then stored as received), so FastAPI cannot infer it. Any JSON is
    # stored and acknowledged: the worker, not the webhook, decides what is not a Hotmart event.
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "The webhook as Hotmart sends it (v2: a JSON object); any JSON is stored.",
            "content": {"application/json": {"schema": {}}},
        }
    },
)
async def hotmart_webhook(request: Request, rt: RuntimeDep) -> JSONResponse:
    started = time.perf_counter()
    response = await _receive(request, rt)
    metrics.observe_webhook(response.status_code, response.body, time.perf_counter() - started)
    return response


async def _receive(request: Request, rt: Runtime) -> JSONResponse:
    limit = rt.settings.max_body_bytes
    try:
        body = await _read_body(request, limit)
    except _TooLarge:
        return JSONResponse({"detail": f"body larger than {limit} bytes"}, status_code=413)
    headers = dict(request.headers)
    expected = rt.settings.hotmart_hottok.get_secret_value()
    header_token = request.headers.get("x-hotmart-hottok")
    try:
        decoded = decode(body)
    except NotJSON as exc:
        # An old-style form-encoded webhook may carry its hottok as a field: verified, it is
        # told what is wrong (and stored, hottok removed), not 401.
        if not (
            hotmart.verify_hottok(header_token, None, expected)
            or hotmart.verify_hottok(form_hottok(body), None, expected)
        ):
            return JSONResponse({"detail": "invalid hottok"}, status_code=401)
        try:
            await run_in_threadpool(_reject, rt, body, headers, exc.reason)
        except Exception:  # noqa: BLE001 - the answer stays 400 either way
            log.exception("could not store a rejected body")
        return JSONResponse({"detail": exc.reason}, status_code=400)
    if not hotmart.verify_hottok(header_token, decoded, expected):
        return JSONResponse({"detail": "invalid hottok"}, status_code=401)
    try:
        stored = await to_thread.run_sync(_store_and_enqueue, rt, body, decoded, headers, limiter=_limiter(rt))
    except Exception:  # noqa: BLE001
        log.exception("could not store a webhook")
        return JSONResponse({"detail": "could not store the event; please redeliver"}, status_code=503)
    if stored.status == "rejected":
        return JSONResponse({"detail": "body is not storable JSON (stored as rejected)"}, status_code=400)
    if stored.duplicate:
        return JSONResponse({"status": "duplicate"})
    return JSONResponse({"status": "accepted", "event_id": stored.event_id})
