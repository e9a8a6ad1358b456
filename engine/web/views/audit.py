"""Audit (``/ui/audit``): what people did (the page's operators, the admin API, the command line),
newest first, from the history: who, what, about whom, and the note they left."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from engine.service.audit import PAGE_ACTOR, audit_actors, audit_kinds, audit_page
from engine.web.access import PREFIX, PageDep
from engine.web.paging import Offset, Pager, blank_to_none, text_query
from engine.web.rendering import render_page

router = APIRouter(prefix=PREFIX, include_in_schema=False)

PAGE_SIZE = 50
SUMMARY_LENGTH = 300  # a row's detail; the student's or event's page has the rest


def summary(detail: dict[str, Any]) -> str:
    """An entry's detail as one short line: ``run_id: 4, mode: all``."""
    parts = []
    for key, value in detail.items():
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        parts.append(f"{key}: {text}")
    line = "; ".join(parts)
    return line if len(line) <= SUMMARY_LENGTH else line[: SUMMARY_LENGTH - 1] + "…"


@router.get("/audit")
async def list_audit(
    page: PageDep,
    who: Annotated[str | None, text_query(100)] = None,
    kind: Annotated[str | None, text_query(40)] = None,
    email: Annotated[str | None, text_query(320)] = None,
    offset: Offset = 0,
) -> HTMLResponse:
    who, kind, email = blank_to_none(who), blank_to_none(kind), blank_to_none(email)
    rt = page.rt

    def read():
        with rt.sessions() as session:
            found = audit_page(session, actor=who, kind=kind, student_email=email, limit=PAGE_SIZE, offset=offset)
            return found, audit_actors(session), audit_kinds(session)

    found, actors, kinds = await run_in_threadpool(read)
    return render_page(
        page,
        "audit.html",
        entries=[(entry, summary(entry.detail)) for entry in found.items],
        paging=Pager(found.total, PAGE_SIZE, offset),
        actors=actors,
        kinds=kinds,
        page_actor=PAGE_ACTOR,
        filters={"who": who or "", "kind": kind or "", "email": email or ""},
    )
