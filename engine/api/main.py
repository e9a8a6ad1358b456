"""The deployed application, built from the environment (``engine serve``; uvicorn factory)."""

from __future__ import annotations

from fastapi import FastAPI


def app_factory() -> FastAPI:
    from engine.api.app import create_app
    from engine.worker import huey, runtime

    return create_app(runtime(), queue_check=huey.pending_count, worker_check=True)
