"""Reconcile (``/ui/reconcile``): the stored runs and each one's report; running a report now; and
applying one as ``engine reconcile --apply [--grants-only] [--confirm]`` does, after a confirmation
that lists what it would do and, beyond the blast-radius guard, names every revocation."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from engine.service.reconcile_runs import (
    ApplyPreview,
    Busy,
    ConfirmationRequired,
    apply_preview,
    apply_reviewed,
    report_now,
    run_page,
    stored_run,
)
from engine.web.access import PREFIX, ActionDep, Page, PageDep
from engine.web.paging import Note, Offset
from engine.web.reading import found_or_404
from engine.web.rendering import render_page
from engine.web.stored_runs import RunId, apply_preview_or_404, runs_page

router = APIRouter(prefix=PREFIX, include_in_schema=False)


async def _runs_page(page: Page, offset: int, *, notice: str | None = None, status_code: int = 200) -> HTMLResponse:
    return await runs_page(page, "reconcile.html", run_page, offset, notice=notice, status_code=status_code)


@router.get("/reconcile")
async def list_reconcile_runs(page: PageDep, offset: Offset = 0) -> HTMLResponse:
    return await _runs_page(page, offset)


@router.post("/reconcile/report")
async def report(page: ActionDep, note: Note = "") -> Response:
    """``engine reconcile``: compare now and store the report (seconds on a large course: Discord's
    member list is paged under its rate limits), in the threadpool; change nothing."""
    try:
        run_id = await run_in_threadpool(report_now, page.rt, operator=page.operator, note=note.strip() or None)
    except Busy:
        return await _runs_page(page, 0, notice=page.t("reconcile.busy"), status_code=409)
    return RedirectResponse(f"{PREFIX}/reconcile/{run_id}", status_code=303)


@router.get("/reconcile/{run_id}")
async def show_run(page: PageDep, run_id: RunId) -> HTMLResponse:
    run = await found_or_404(page, stored_run, run_id)
    return render_page(
        page,
        "reconcile_run.html",
        run=run,
        diff=run["diff"] or {},
    )


def _confirmation(
    page: Page, preview: ApplyPreview, *, error: str | None = None, status_code: int = 200
) -> HTMLResponse:
    return render_page(
        page,
        "reconcile_apply.html",
        preview=preview,
        error=error,
        status_code=status_code,
    )


async def _preview(page: Page, run_id: int, grants_only: bool) -> ApplyPreview:
    return await apply_preview_or_404(page, stored_run, apply_preview, run_id, grants_only)


@router.get("/reconcile/{run_id}/apply")
async def confirm_apply(page: PageDep, run_id: RunId, grants_only: Annotated[bool, Query()] = False) -> HTMLResponse:
    """What applying would do, from the stored report: the step before the POST."""
    return _confirmation(page, await _preview(page, run_id, grants_only))


@router.post("/reconcile/{run_id}/apply")
async def apply(
    page: ActionDep,
    run_id: RunId,
    grants_only: Annotated[bool, Form()] = False,
    confirm: Annotated[bool, Form()] = False,
    note: Note = "",
) -> Response:
    preview = await _preview(page, run_id, grants_only)
    try:
        new_run = await run_in_threadpool(
            lambda: apply_reviewed(page.rt, preview, confirm=confirm, operator=page.operator, note=note.strip() or None)
        )
    except ConfirmationRequired:
        return _confirmation(page, preview, error=page.t("reconcile.confirm_required"), status_code=400)
    except Busy:
        return _confirmation(page, preview, error=page.t("reconcile.busy"), status_code=409)
    return RedirectResponse(f"{PREFIX}/reconcile/{new_run}", status_code=303)
