"""``POST /webhooks/{source}``: verify, store, acknowledge. No outbound call here.

Every platform (engine.sources) comes in through the same intake. Platforms give up on a URL
that keeps failing (Hotmart disables it, Eduzz discards after 3 tries), so only a problem a
redelivery can fix (the database is down) gets a 5xx; everything else is stored and answered
200/400/401.
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
from engine.pipeline.intake import store_rejected, store_webhook
from engine.pipeline.runtime import Runtime
from engine.pipeline.storable import NotJSON, decode
from engine.sources import DEFAULT_SOURCE, NOT_JSON, SOURCES, Source, source_enabled, source_secret
from engine.statuses import EventStatus

log = logging.getLogger(__name__)
router = APIRouter(tags=["webhooks"])


def _store_and_enqueue(rt: Runtime, source: Source, body: bytes, decoded: object, headers: dict[str, str]):
    # A bare connection, not an ORM session: one insert, on the hot path.
    held = not source_enabled(rt.settings, source.name)
    with rt.db.begin() as connection:
        stored = store_webhook(source, connection, body, headers, held=held, decoded=decoded)
    if stored.status == EventStatus.RECEIVED and not stored.duplicate:
        for event_id in stored.event_ids:
            try:
                rt.queue.enqueue(event_id)  # after the commit: the worker must find the row
            except Exception:  # noqa: BLE001 - stored is what matters; the sweep enqueues it later
                log.warning("could not enqueue event %s; the sweep will", event_id, exc_info=True)
    return stored


_limiters: dict[int, CapacityLimiter] = {}


def _limiter(rt: Runtime) -> CapacityLimiter:
    """The webhook's own few threads: each holds a thread ~1 ms, and more threads mostly trade the
    GIL back and forth (measured: 3 per process is fastest on 2 cores). Admin routes use others."""
    key = id(rt)
    if key not in _limiters:
        _limiters[key] = CapacityLimiter(rt.settings.webhook_threads)
    return _limiters[key]


def _reject(rt: Runtime, source: Source, body: bytes, headers: dict[str, str], reason: str) -> None:
    with rt.sessions.begin() as session:
        store_rejected(session, body, headers, reason, source)


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
    f"/webhooks/{DEFAULT_SOURCE.name}",
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
    return await _answer(request, rt, DEFAULT_SOURCE)


@router.post(
    "/webhooks/{source}",
    summary="Receive a payment platform's webhook (kiwify, eduzz ...)",
    responses={
        200: {"description": '`{"status": "accepted"}` or `{"status": "duplicate"}`'},
        400: {"description": "body is not JSON, or nests too deep (stored as rejected)"},
        401: {"description": "missing or wrong signature (each platform signs its own way)"},
        404: {"description": "no such source"},
        413: {"description": "body too large"},
        503: {"description": "could not store the event (database unavailable); the platform will redeliver"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "The webhook as the platform sends it (a JSON object); any JSON is stored.",
            "content": {"application/json": {"schema": {}}},
        }
    },
)
async def source_webhook(source: str, request: Request, rt: RuntimeDep) -> JSONResponse:
    found = SOURCES.get(source)
    if found is None:
        return JSONResponse({"detail": f"no source {source!r} (known: {', '.join(SOURCES)})"}, status_code=404)
    return await _answer(request, rt, found)


async def _answer(request: Request, rt: Runtime, source: Source) -> JSONResponse:
    started = time.perf_counter()
    response = await _receive(request, rt, source)
    metrics.observe_webhook(response.status_code, response.body, time.perf_counter() - started, source.name)
    return response


async def _receive(request: Request, rt: Runtime, source: Source) -> JSONResponse:
    limit = rt.settings.max_body_bytes
    try:
        body = await _read_body(request, limit)
    except _TooLarge:
        return JSONResponse({"detail": f"body larger than {limit} bytes"}, status_code=413)
    headers = dict(request.headers)
    secret = source_secret(rt.settings, source.name)
    query = dict(request.query_params)
    try:
        decoded = decode(body)
    except NotJSON as exc:
        # A verified body that is not JSON (an old-style form-encoded webhook may carry its
        # hottok as a field) is told what is wrong, and stored, secret removed; not 401.
        if not source.verify(body, request.headers, query, secret, NOT_JSON):
            return _unauthorized(source)
        try:
            await run_in_threadpool(_reject, rt, source, body, headers, exc.reason)
        except Exception:  # noqa: BLE001 - the answer stays 400 either way
            log.exception("could not store a rejected body")
        return JSONResponse({"detail": exc.reason}, status_code=400)
    if not source.verify(body, request.headers, query, secret, decoded):
        return _unauthorized(source)
    try:
        stored = await to_thread.run_sync(_store_and_enqueue, rt, source, body, decoded, headers, limiter=_limiter(rt))
    except Exception:  # noqa: BLE001
        log.exception("could not store a webhook")
        return JSONResponse({"detail": "could not store the event; please redeliver"}, status_code=503)
    if stored.status == EventStatus.REJECTED:
        return JSONResponse({"detail": "body is not storable JSON (stored as rejected)"}, status_code=400)
    if stored.duplicate:
        return JSONResponse({"status": "duplicate"})
    return JSONResponse({"status": "accepted", "event_id": stored.event_id})


def _unauthorized(source: Source) -> JSONResponse:
    return JSONResponse({"detail": source.unauthorized}, status_code=401)
