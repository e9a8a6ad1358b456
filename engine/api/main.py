"""The deployed application, built from the environment (``engine serve``; uvicorn factory)."""

from __future__ import annotations

from fastapi import FastAPI


def app_factory() -> FastAPI:
    from engine.api.app import create_app
    from engine.logs import configure_logging
    from engine.settings import get_settings
    from engine.worker import huey, runtime

    configure_logging(get_settings().logs_as)  # also in `serve --workers N`'s child processes

    rt = runtime()
    rt.rules.watch(rt.settings.rules_reload_seconds)  # the newest valid rules, even with no traffic
    return create_app(rt, queue_check=huey.pending_count, worker_check=True)
