"""The overview: the day at a glance (``/ui/``)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from engine.service.overview import overview
from engine.sources import SOURCES
from engine.web.access import PREFIX, PageDep
from engine.web.rendering import render_page

router = APIRouter(prefix=PREFIX, include_in_schema=False)


@router.get("/")
async def show_overview(page: PageDep) -> HTMLResponse:
    rt = page.rt

    def read():
        rt.rules.reload_if_changed()  # "the rules on disk": this process reloads them first
        rules = rt.rules.rules if rt.rules.available else None
        enabled = [name for name, source in SOURCES.items() if getattr(rt.settings, source.enabled_setting, False)]
        with rt.sessions() as session:
            return overview(
                session,
                rules,
                rt.settings,
                sources=enabled,
                rules_version=rt.rules.version,
                rules_error=rt.rules.load_error,
                now=rt.now(),
            )

    data = await run_in_threadpool(read)
    return render_page(page, "overview.html", view=data)
