"""Hotmart sync (``/ui/sync``): the stored ``engine sync hotmart`` runs and each one's findings; and,
while ``HOTMART_SYNC_ENABLED``, running a report now and applying one as ``engine sync hotmart
--apply [--grants-only] [--confirm]`` does, after a confirmation that names every change that
would end access beyond the blast-radius guard."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from engine.service.sync_runs import (
    Busy,
    ConfirmationRequired,
    NotRead,
    SyncPreview,
    apply_preview,
    apply_reviewed,
    report_now,
    run_page,
    stored_run,
)
from engine.web.access import PREFIX, ActionDep, Page, PageDep
from engine.web.notices import notice_location
from engine.web.paging import Note, Offset
from engine.web.reading import found_or_404
from engine.web.rendering import render_page
from engine.web.stored_runs import RunId, apply_preview_or_404, runs_page

router = APIRouter(prefix=PREFIX, include_in_schema=False)


def _enabled(page: Page) -> bool:
    return page.rt.settings.hotmart_sync_enabled


async def _runs_page(page: Page, offset: int, *, notice: str | None = None, status_code: int = 200) -> HTMLResponse:
    return await runs_page(
        page, "sync.html", run_page, offset, enabled=_enabled(page), notice=notice, status_code=status_code
    )


async def _off(page: Page) -> HTMLResponse:
    """An action while the sync is off: nothing runs, the list says why and how to turn it on."""
    return await _runs_page(page, 0, notice=page.t("sync.off_refused"), status_code=409)


@router.get("/sync")
async def list_sync_runs(page: PageDep, offset: Offset = 0) -> HTMLResponse:
    return await _runs_page(page, offset)


@router.post("/sync/report")
async def report(page: ActionDep, note: Note = "") -> Response:
    """``engine sync hotmart``: read Hotmart and store the report (seconds to minutes on a large
    account: Hotmart's pages under its rate limit), in the threadpool; change nothing."""
    if not _enabled(page):
        return await _off(page)
    try:
        run_id = await run_in_threadpool(report_now, page.rt, operator=page.operator, note=note.strip() or None)
    except Busy:
        return await _runs_page(page, 0, notice=page.t("sync.busy"), status_code=409)
    except NotRead as exc:
        return await _runs_page(page, 0, notice=page.t("sync.not_read", why=str(exc)), status_code=502)
    return RedirectResponse(
        notice_location(f"{PREFIX}/sync/{run_id}", page.csrf_token, "sync.reported", id=run_id), status_code=303
    )


@router.get("/sync/{sync_run_id}")
async def show_run(page: PageDep, sync_run_id: RunId) -> HTMLResponse:
    run = await found_or_404(page, stored_run, sync_run_id)
    return render_page(page, "sync_run.html", run=run, report=run["report"] or {}, enabled=_enabled(page))


def _confirmation(
    page: Page, preview: SyncPreview, *, error: str | None = None, status_code: int = 200
) -> HTMLResponse:
    return render_page(
        page, "sync_apply.html", preview=preview, enabled=_enabled(page), error=error, status_code=status_code
    )


async def _preview(page: Page, run_id: int, grants_only: bool) -> SyncPreview:
    return await apply_preview_or_404(page, stored_run, apply_preview, run_id, grants_only)


@router.get("/sync/{sync_run_id}/apply")
async def confirm_apply(
    page: PageDep, sync_run_id: RunId, grants_only: Annotated[bool, Query()] = False
) -> HTMLResponse:
    """What applying would store, from the stored report: the step before the POST (with the sync
    off, the same list and no form)."""
    return _confirmation(page, await _preview(page, sync_run_id, grants_only))


@router.post("/sync/{sync_run_id}/apply")
async def apply(
    page: ActionDep,
    sync_run_id: RunId,
    grants_only: Annotated[bool, Form()] = False,
    confirm: Annotated[bool, Form()] = False,
    note: Note = "",
) -> Response:
    if not _enabled(page):
        return await _off(page)
    preview = await _preview(page, sync_run_id, grants_only)
    try:
        new_run = await run_in_threadpool(
            lambda: apply_reviewed(page.rt, preview, confirm=confirm, operator=page.operator, note=note.strip() or None)
        )
    except ConfirmationRequired:
        return _confirmation(page, preview, error=page.t("sync.confirm_required"), status_code=400)
    except Busy:
        return _confirmation(page, preview, error=page.t("sync.busy"), status_code=409)
    except NotRead as exc:
        return _confirmation(page, preview, error=page.t("sync.not_read", why=str(exc)), status_code=502)
    return RedirectResponse(
        notice_location(f"{PREFIX}/sync/{new_run}", page.csrf_token, "sync.applied", id=new_run), status_code=303
    )
