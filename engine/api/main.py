"""The deployed application, built from the environment (``engine serve``; uvicorn factory)."""

from __future__ import annotations

from fastapi import FastAPI


def app_factory() -> FastAPI:
    from engine.api.app import create_app
    from engine.logs import configure_logging
    from engine.settings import get_settings
    from engine.worker import huey, runtime

    configure_logging(get_settings().logs_as)  # also in `serve --workers N`'s child processes

    return create_app(runtime(), queue_check=huey.pending_count)
