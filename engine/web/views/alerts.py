"""Alerts (``/ui/alerts``): what the engine raised for an admin, newest first, through the service
``GET /admin/alerts`` uses (the same redaction), filtered and paged; and acknowledging one, with a
note, written to the history under the operator's name."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse

from engine.service import audit
from engine.service.alerts import acknowledge_alert, alert_detail, alert_kinds, alert_page
from engine.service.schemas import MAX_ID
from engine.web.access import PREFIX, ActionDep, PageDep
from engine.web.paging import Note, Offset, Pager, blank_to_none, text_query
from engine.web.rendering import render_page

router = APIRouter(prefix=PREFIX, include_in_schema=False)

PAGE_SIZE = 50
ACKNOWLEDGED = {"open": False, "acknowledged": True, "all": None}
AlertId = Annotated[int, Path(ge=1, le=MAX_ID)]


@router.get("/alerts")
async def list_alerts(
    page: PageDep,
    status: Annotated[Literal["open", "acknowledged", "all"], Query()] = "open",
    kind: Annotated[str | None, text_query(60)] = None,
    group: Annotated[str | None, text_query(200)] = None,
    email: Annotated[str | None, text_query(320)] = None,
    offset: Offset = 0,
) -> HTMLResponse:
    kind, group, email = blank_to_none(kind), blank_to_none(group), blank_to_none(email)
    rt = page.rt

    def read():
        with rt.sessions() as session:
            found = alert_page(
                session,
                rt.settings,
                acknowledged=ACKNOWLEDGED[status],
                kind=kind,
                group=group,
                student_email=email,
                limit=PAGE_SIZE,
                offset=offset,
            )
            return found, alert_kinds(session)

    found, kinds = await run_in_threadpool(read)
    return render_page(
        page,
        "alerts.html",
        alerts=found.items,
        paging=Pager(found.total, PAGE_SIZE, offset),
        kinds=kinds,
        filters={"status": status, "kind": kind or "", "group": group or "", "email": email or ""},
    )


@router.get("/alerts/{alert_id}")
async def show_alert(page: PageDep, alert_id: AlertId) -> HTMLResponse:
    """The whole alert and, while it is open, what acknowledging it does: the confirmation."""
    rt = page.rt

    def read():
        with rt.sessions() as session:
            return alert_detail(session, rt.settings, alert_id)

    alert = await run_in_threadpool(read)
    if alert is None:
        raise HTTPException(404)
    return render_page(page, "alert.html", alert=alert)


@router.post("/alerts/{alert_id}/acknowledge")
async def acknowledge(page: ActionDep, alert_id: AlertId, note: Note = "") -> RedirectResponse:
    """``POST /admin/alerts/{id}/ack``'s service, then a history row: who, which alert, why."""
    rt = page.rt

    def act() -> bool:
        with rt.sessions() as session:
            acknowledged = acknowledge_alert(session, rt.settings, alert_id, now=rt.now())
            if acknowledged is None:
                return False
            audit.record(
                session,
                page.operator,
                "alert_acknowledged",
                at=rt.now(),
                note=note.strip() or None,
                student_id=acknowledged.student_id,
                event_id=acknowledged.event_id,
                detail={"alert_id": alert_id, "alert_kind": acknowledged.kind, "count": acknowledged.count},
            )
            return True

    if not await run_in_threadpool(act):
        raise HTTPException(404)
    return RedirectResponse(f"{PREFIX}/alerts/{alert_id}", status_code=303)
