"""One module per view of the admin page, each with an ``APIRouter`` named ``router`` under ``/ui``:
a new view is a new module here (and its catalogue file and template), nothing else to register."""

from __future__ import annotations

import importlib
import pkgutil

from fastapi import APIRouter


def all_routers() -> list[APIRouter]:
    """Every view's router, in module-name order."""
    routers = []
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        view = importlib.import_module(f"{__name__}.{module.name}")
        router = getattr(view, "router", None)
        if isinstance(router, APIRouter):
            routers.append(router)
    return routers
