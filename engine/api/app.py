"""The FastAPI application: webhooks, admin API, health."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from engine import metrics
from engine.api import admin, doctor, reconcile, webhooks
from engine.api.deps import RuntimeDep, require_admin
from engine.pipeline.runtime import Runtime


def create_app(runtime: Runtime, *, queue_check: Callable[[], object] | None = None) -> FastAPI:
    app = FastAPI(
        title="Lifecycle engine",
        description="Hotmart webhooks in; Discord roles, ManyChat tags/flows and classes out. "
        "Admin routes need `Authorization: Bearer $ADMIN_API_TOKEN`.",
        version="0.1.0",
    )
    app.state.runtime = runtime
    app.state.queue_check = queue_check
    app.include_router(webhooks.router)
    app.include_router(admin.router)
    app.include_router(doctor.router)
    app.include_router(reconcile.router)

    @app.get("/healthz", tags=["health"], summary="Database and queue reachable; the rules version")
    async def healthz(rt: RuntimeDep) -> JSONResponse:
        checks: dict[str, str] = {}

        def database() -> None:
            with rt.sessions() as session:
                session.execute(text("SELECT 1"))

        for name, check in (("database", database), ("queue", app.state.queue_check)):
            if check is None:
                continue
            try:
                await run_in_threadpool(check)
                checks[name] = "ok"
            except Exception as exc:  # noqa: BLE001
                checks[name] = f"error: {type(exc).__name__}"
        healthy = all(value == "ok" for value in checks.values())
        rules = rules_health(rt)
        status = "ok" if healthy and rules["rules_error"] is None else "degraded"
        return JSONResponse({"status": status, **checks, **rules}, status_code=200 if healthy else 503)

    collector = metrics.EngineCollector(runtime, queue_depth=queue_check)

    @app.get(
        "/metrics",
        tags=["health"],
        summary="Prometheus metrics (admin token)",
        response_class=PlainTextResponse,
        dependencies=[Depends(require_admin)],
    )
    async def prometheus_metrics() -> PlainTextResponse:
        body = await run_in_threadpool(metrics.render, collector)
        return PlainTextResponse(body, media_type=CONTENT_TYPE_LATEST)

    return app


def rules_health(rt: Runtime) -> dict[str, str | None]:
    """The loaded rules version and the last load error (invalid rules degrade, still 200:
    webhooks are stored without rules, and the last valid version keeps running)."""
    return {"rules_version": rt.rules.version, "rules_error": rt.rules.load_error}
