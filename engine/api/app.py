"""The FastAPI application: webhooks, admin API, health."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST

from engine import metrics
from engine.api import admin, classes, doctor, reconcile, sync, webhooks
from engine.api.deps import ADMIN_RESPONSES, RuntimeDep, require_admin
from engine.api.docs import add_protected_docs, add_rules_enums, docs_urls
from engine.pipeline.runtime import Runtime
from engine.service.health import StaleHeartbeat, check_database_writable, check_worker_heartbeat, stuck_report
from engine.web import add_admin_page


def create_app(
    runtime: Runtime, *, queue_check: Callable[[], object] | None = None, worker_check: bool = False
) -> FastAPI:
    """``queue_check``: raises when the queue is down; ``worker_check``: /healthz also requires a
    fresh worker heartbeat (the deployed app; tests without a worker leave it off)."""
    app = FastAPI(
        title="Lifecycle engine",
        description="Hotmart webhooks in; Discord roles, ManyChat tags/flows and classes out. "
        "Admin routes need `Authorization: Bearer $ADMIN_API_TOKEN`; the course platform's read API "
        "(`/api/v1`) its own `Authorization: Bearer $COURSE_API_TOKEN`.",
        version="0.1.0",
        **docs_urls(runtime.settings.api_docs_mode),
    )
    if runtime.settings.api_docs_mode == "admin":
        add_protected_docs(app)
    app.state.runtime = runtime
    app.state.queue_check = queue_check
    app.state.worker_check = worker_check
    app.include_router(webhooks.router)
    app.include_router(admin.router)
    app.include_router(doctor.router)
    app.include_router(reconcile.router)
    app.include_router(sync.router)
    app.include_router(classes.router)
    add_rules_enums(app)
    add_admin_page(app)

    @app.get("/healthz", tags=["health"], summary="Database writable, queue reachable, worker alive; the rules version")
    async def healthz(rt: RuntimeDep) -> JSONResponse:
        checks: dict[str, str] = {}
        for name, check in _health_checks(app, rt).items():
            try:
                await run_in_threadpool(check)
                checks[name] = "ok"
            except StaleHeartbeat as exc:
                checks[name] = f"error: {exc}"
            except Exception as exc:  # noqa: BLE001 - the class only: messages may carry URLs
                checks[name] = f"error: {type(exc).__name__}"
        healthy = all(value == "ok" for value in checks.values())
        # 503 only when this API cannot take webhooks; a stale worker and invalid rules are reported
        # (webhooks are still stored), and the worker's own healthcheck is `engine healthcheck --worker`.
        serving = all(value == "ok" for name, value in checks.items() if name != "worker")
        rules = rules_health(rt)
        stuck = None
        if checks["database"] == "ok":
            try:
                stuck = await run_in_threadpool(stuck_report, rt.sessions, rt.settings)
            except Exception:  # noqa: BLE001 - the database check above reports the database
                stuck = None
        # A stuck student degrades the service (still 200: webhooks are stored; the sweep alerts).
        status = "ok" if healthy and rules["rules_error"] is None and stuck is None else "degraded"
        body = {"status": status, **checks, **rules, "stuck": stuck}
        return JSONResponse(body, status_code=200 if serving else 503)

    collector = metrics.EngineCollector(runtime, queue_depth=queue_check)

    @app.get(
        "/metrics",
        tags=["health"],
        summary="Prometheus metrics (admin token)",
        response_class=PlainTextResponse,
        dependencies=[Depends(require_admin)],
        responses=ADMIN_RESPONSES,
    )
    async def prometheus_metrics() -> PlainTextResponse:
        body = await run_in_threadpool(metrics.render, collector)
        return PlainTextResponse(body, media_type=CONTENT_TYPE_LATEST)

    return app


def _health_checks(app: FastAPI, rt: Runtime) -> dict[str, Callable[[], object]]:
    checks: dict[str, Callable[[], object]] = {"database": lambda: check_database_writable(rt.sessions)}
    if app.state.queue_check is not None:
        checks["queue"] = app.state.queue_check
    if app.state.worker_check:
        checks["worker"] = lambda: check_worker_heartbeat(rt.settings, sessions=rt.sessions)
    return checks


def rules_health(rt: Runtime) -> dict[str, str | None]:
    """The loaded rules version and the last load error (invalid rules degrade, still 200:
    webhooks are stored without rules, and the last valid version keeps running)."""
    return {"rules_version": rt.rules.version, "rules_error": rt.rules.load_error}
