"""The FastAPI application: webhooks, admin API, health."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import text

from engine.api import admin, webhooks
from engine.api.deps import RuntimeDep
from engine.api.docs import add_protected_docs, docs_urls
from engine.pipeline.runtime import Runtime


def create_app(runtime: Runtime, *, queue_check: Callable[[], None] | None = None) -> FastAPI:
    app = FastAPI(
        title="Lifecycle engine",
        description="Hotmart webhooks in; Discord roles, ManyChat tags/flows and classes out. "
        "Admin routes need `Authorization: Bearer $ADMIN_API_TOKEN`.",
        version="0.1.0",
        **docs_urls(runtime.settings.api_docs_mode),
    )
    if runtime.settings.api_docs_mode == "admin":
        add_protected_docs(app)
    app.state.runtime = runtime
    app.state.queue_check = queue_check
    app.include_router(webhooks.router)
    app.include_router(admin.router)

    @app.get("/healthz", tags=["health"], summary="Database and queue reachable")
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
        return JSONResponse({"status": "ok" if healthy else "degraded", **checks}, status_code=200 if healthy else 503)

    return app
