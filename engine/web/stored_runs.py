"""What the pages of stored runs share (reconcile, the Hotmart sync): a run's id in the address, the
list of runs with its pager, and an apply's preview read from a stored run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import HTTPException, Path
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from engine.service.schemas import MAX_ID
from engine.service.stored_runs import RunPage
from engine.web.access import Page
from engine.web.paging import Pager
from engine.web.reading import found_or_404, in_session
from engine.web.rendering import render_page

PAGE_SIZE = 20
RunId = Annotated[int, Path(ge=1, le=MAX_ID)]

Preview = TypeVar("Preview")


async def runs_page(
    page: Page,
    template: str,
    run_page: Callable[..., RunPage],
    offset: int,
    *,
    notice: str | None = None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """``template`` with the runs ``run_page`` lists from ``offset``, their pager and ``notice``
    (why an action was refused)."""
    found = await in_session(page, run_page, limit=PAGE_SIZE, offset=offset)
    paging = Pager(found.total, PAGE_SIZE, offset)
    return render_page(
        page, template, runs=found.items, paging=paging, notice=notice, status_code=status_code, **context
    )


async def apply_preview_or_404(
    page: Page,
    stored_run: Callable[..., dict[str, Any] | None],
    apply_preview: Callable[..., Preview | None],
    run_id: int,
    grants_only: bool,
) -> Preview:
    """What applying stored run ``run_id`` would do (``apply_preview`` of what ``stored_run``
    finds), in the threadpool; the 404 page when there is no such run or it has no report."""
    run = await found_or_404(page, stored_run, run_id)
    preview = await run_in_threadpool(lambda: apply_preview(page.rt, run, grants_only=grants_only))
    if preview is None:
        raise HTTPException(404)  # a run still running, or failed: no report to apply
    return preview
