"""One student (``/ui/students/{email}``): who they are, their memberships, their access (what the
rules want, what the ledger says was granted and, on demand, what Discord and ManyChat hold now),
their whole timeline, and the operator's actions on them.

Each action shows what it will do first (a panel loaded by htmx, or a page of its own without
JavaScript): a new code, a replay, a retry, reconcile. The confirm button POSTs with the session's
CSRF token and an optional note; the service writes the history row with the operator's name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, HTTPException, Path, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse

from engine.pipeline.runtime import Runtime
from engine.service import audit
from engine.service.code_request import code_request_preview, request_code
from engine.service.replays import replay_events
from engine.service.retry import RetryRefused, retry_event, retry_preview
from engine.service.schemas import MAX_ID, PRINTABLE, StudentDetail
from engine.service.student_access import (
    Busy,
    StudentAccess,
    is_students_event,
    reconcile_one,
    student_access,
    student_id_of,
)
from engine.service.students import states_waiting_for_link, student_detail
from engine.service.timeline import Entry, student_timeline
from engine.statuses import EventStatus
from engine.web.access import PREFIX, ActionDep, Page, PageDep
from engine.web.notices import notice_location
from engine.web.rendering import render_page

if TYPE_CHECKING:
    from engine.reconcile.apply import Applied

router = APIRouter(prefix=f"{PREFIX}/students", include_in_schema=False)

NOTE_MAX = 1000
TIMELINE_SHOWN = 500  # newest entries on the page; `engine student EMAIL` prints them all

Email = Annotated[str, Path(pattern=PRINTABLE, min_length=1, max_length=320)]
EventQuery = Annotated[int, Query(alias="event", ge=1, le=MAX_ID)]
EventForm = Annotated[int, Form(alias="event", ge=1, le=MAX_ID)]
ProductQuery = Annotated[str, Query(pattern=PRINTABLE, min_length=1, max_length=100)]
ProductForm = Annotated[str, Form(pattern=PRINTABLE, min_length=1, max_length=100)]
NoteForm = Annotated[str, Form(max_length=NOTE_MAX)]
Flag = Annotated[bool, Form()]

# What an operator may retry from the timeline (the preview says when a retry is refused).
RETRYABLE = frozenset({EventStatus.FAILED, EventStatus.RETRYING, EventStatus.NEEDS_ATTENTION})
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # a note keeps its line breaks and tabs, nothing else unseen


@dataclass(frozen=True)
class Notice:
    tone: str  # ok | warn | bad
    text: str
    event_id: int | None = None


@dataclass
class StudentPageData:
    detail: StudentDetail
    entries: list[Entry]  # newest first
    entries_total: int
    access: StudentAccess | None  # None: the rules do not load
    rules_error: str | None
    waiting: frozenset[str]  # the states that wait for the Discord link


def student_url(email: str) -> str:
    return f"{PREFIX}/students/{quote(email, safe='')}"


def _note(text: str) -> str | None:
    cleaned = _CONTROL.sub("", text).strip()
    return cleaned or None


def _read(rt: Runtime, email: str) -> StudentPageData | None:
    rules = rt.rules.rules if _rules_loaded(rt) else None
    with rt.sessions() as session:
        detail = student_detail(session, rt.settings, email, history_limit=1, now=rt.now())
        if detail is None:
            return None
        timeline = student_timeline(session, email, rt.settings)
    entries = list(reversed(timeline.entries)) if timeline else []
    return StudentPageData(
        detail=detail,
        entries=entries[:TIMELINE_SHOWN],
        entries_total=len(entries),
        access=student_access(rt, rules, email) if rules else None,
        rules_error=None if rules else rt.rules.load_error,
        waiting=states_waiting_for_link(rules) if rules else frozenset(),
    )


async def _student_page(page: Page, email: str, *, notice: Notice | None = None, status_code: int = 200):
    view = await run_in_threadpool(_read, page.rt, email)
    if view is None:
        raise HTTPException(404)
    return render_page(
        page,
        "student.html",
        status_code=status_code,
        s=view.detail,
        view=view,
        access=view.access,
        rules_error=view.rules_error,
        here=student_url(view.detail.email),
        back_path=student_url(view.detail.email),
        notice=notice,
        retryable=RETRYABLE,
    )


def _panel(page: Page, email: str, partial: str, **context: Any) -> HTMLResponse:
    """A partial for htmx (into the page's panel), or the same on a page of its own without JavaScript."""
    htmx = page.request.headers.get("hx-request") == "true"
    return render_page(
        page,
        partial if htmx else "student_panel.html",
        partial=partial,
        email=email,
        here=student_url(email),
        back_path=student_url(email),
        **context,
    )


def _rules_loaded(rt: Runtime) -> bool:
    """The newest rules on disk, loaded in this process (the API's): False when none are valid."""
    rt.rules.reload_if_changed()
    return rt.rules.available


def _known(rt: Runtime, email: str, event_id: int | None = None) -> str:
    """The student's stored e-mail; 404 for an unknown student, or an event that is not theirs."""
    with rt.sessions() as session:
        if student_id_of(session, email) is None:
            raise HTTPException(404)
        if event_id is not None and not is_students_event(session, email, event_id):
            raise HTTPException(404)
    return email.strip().lower()


# --- reading ---------------------------------------------------------------------------------


@router.get("/{email}")
async def show_student(
    page: PageDep, email: Email, done: Annotated[str | None, Query(max_length=4000)] = None
) -> HTMLResponse:
    # ``done``: an action's outcome across its redirect, shown by every page (engine.web.notices).
    return await _student_page(page, email)


def _done(page: Page, email: str, key: str, *, event_id: int | None = None, **values: Any) -> RedirectResponse:
    """After an action that changed something: to the student's page with its outcome (a refresh
    there shows the outcome again, and sends nothing)."""
    return RedirectResponse(
        notice_location(student_url(email), page.csrf_token, key, event_id=event_id, **values), status_code=303
    )


@router.get("/{email}/access")
async def live_access(page: PageDep, email: Email) -> HTMLResponse:
    """The access table with what Discord, ManyChat and the classes hold now (the connectors are asked)."""
    rt = page.rt

    def read() -> StudentAccess | None:
        _known(rt, email)
        return student_access(rt, rt.rules.rules, email, live=True) if _rules_loaded(rt) else None

    access = await run_in_threadpool(read)
    return _panel(page, email, "student_access.html", access=access, rules_error=rt.rules.load_error)


# --- previews: what an action will do, nothing changed -----------------------------------------


@router.get("/{email}/code")
async def preview_code(page: PageDep, email: Email, product: ProductQuery) -> HTMLResponse:
    rt = page.rt

    def preview():
        _known(rt, email)
        if not _rules_loaded(rt):
            return None
        try:
            return code_request_preview(rt, email, product)
        except LookupError:
            raise HTTPException(404) from None

    plan = await run_in_threadpool(preview)
    return _panel(
        page,
        email,
        "student_confirm.html",
        action="code",
        product=product,
        plan=plan,
        unavailable=None if plan else rt.rules.load_error or "—",
        can_confirm=plan is not None and not plan.ignored,
    )


@router.get("/{email}/replay")
async def preview_replay(page: PageDep, email: Email, event_id: EventQuery) -> HTMLResponse:
    rt = page.rt

    def preview():
        _known(rt, email, event_id)
        return replay_events(rt, [event_id], dry_run=True, actor=audit.page_actor(page.operator))[0]

    result = await run_in_threadpool(preview)
    return _panel(
        page,
        email,
        "student_confirm.html",
        action="replay",
        event_id=event_id,
        result=result,
        can_confirm=not result.refused,
    )


@router.get("/{email}/retry")
async def preview_retry(
    page: PageDep, email: Email, event_id: EventQuery, force: Annotated[bool, Query()] = False
) -> HTMLResponse:
    rt = page.rt

    def preview():
        _known(rt, email, event_id)
        return retry_preview(rt, event_id, force=force)

    result = await run_in_threadpool(preview)
    return _panel(
        page,
        email,
        "student_confirm.html",
        action="retry",
        event_id=event_id,
        preview=result,
        force=force,
        can_confirm=result.refused is None,
    )


@router.get("/{email}/reconcile")
async def preview_reconcile(page: PageDep, email: Email) -> HTMLResponse:
    """The diff for this student alone (the connectors are asked) and what applying it would change."""
    rt = page.rt

    def preview() -> StudentAccess | None:
        _known(rt, email)
        return student_access(rt, rt.rules.rules, email, live=True) if _rules_loaded(rt) else None

    access = await run_in_threadpool(preview)
    world = access.world if access else None
    return _panel(
        page,
        email,
        "student_confirm.html",
        action="reconcile",
        world=world,
        unavailable=None if access else rt.rules.load_error or "—",
        can_confirm=world is not None and not world.report.diff.empty,
    )


# --- actions: each POST with the session's CSRF token, written to the history ------------------


@router.post("/{email}/code")
async def send_code(page: ActionDep, email: Email, product: ProductForm, note: NoteForm = "") -> HTMLResponse:
    rt = page.rt

    def act() -> int | None:
        stored = _known(rt, email)
        if not _rules_loaded(rt):
            return None
        try:
            return request_code(rt, stored, product, actor=audit.page_actor(page.operator), note=_note(note))
        except LookupError:
            raise HTTPException(404) from None

    event_id = await run_in_threadpool(act)
    if event_id is None:
        return await _student_page(
            page, email, notice=Notice("bad", page.t("student.rules_unavailable")), status_code=409
        )
    return _done(page, email, "student.code_sent", event_id=event_id, product=product)


@router.post("/{email}/replay")
async def replay(page: ActionDep, email: Email, event_id: EventForm, note: NoteForm = "") -> HTMLResponse:
    rt = page.rt

    def act():
        _known(rt, email, event_id)
        return replay_events(rt, [event_id], dry_run=False, actor=audit.page_actor(page.operator), note=_note(note))

    (result,) = await run_in_threadpool(act)
    if result.refused:
        notice = Notice("bad", f"{page.t('student.refused')}: {result.reason}", event_id)
        return await _student_page(page, email, notice=notice, status_code=409)
    return _done(page, email, "student.replayed", event_id=event_id)


@router.post("/{email}/retry")
async def retry(
    page: ActionDep, email: Email, event_id: EventForm, force: Flag = False, note: NoteForm = ""
) -> HTMLResponse:
    rt = page.rt

    def act() -> str | None:
        _known(rt, email, event_id)
        try:
            retry_event(rt, event_id, force=force, actor=audit.page_actor(page.operator), note=_note(note), audit=True)
        except RetryRefused as exc:
            return str(exc)
        return None

    refused = await run_in_threadpool(act)
    if refused:
        notice = Notice("bad", f"{page.t('student.refused')}: {refused}", event_id)
        return await _student_page(page, email, notice=notice, status_code=409)
    return _done(page, email, "student.retried", event_id=event_id)


@router.post("/{email}/reconcile")
async def reconcile(
    page: ActionDep,
    email: Email,
    note: NoteForm = "",
    grants_only: Flag = False,
    confirm: Flag = False,
) -> HTMLResponse:
    rt = page.rt

    def act() -> Notice | Applied:
        _known(rt, email)
        if not _rules_loaded(rt):
            return Notice("bad", page.t("student.rules_unavailable"))
        try:
            applied = reconcile_one(
                rt,
                email,
                actor=audit.page_actor(page.operator),
                note=_note(note),
                confirm=confirm,
                grants_only=grants_only,
            )
        except Busy:
            return Notice("bad", page.t("student.reconcile_busy"))
        except LookupError:
            return Notice("ok", page.t("student.nothing_to_change"))
        if applied.held:
            return Notice("bad", page.t("student.reconcile_held", count=applied.revokes, limit=applied.limit))
        if not applied.events:
            return Notice("ok", page.t("student.nothing_to_change"))
        return applied

    outcome = await run_in_threadpool(act)
    if isinstance(outcome, Notice):  # nothing changed: no redirect needed
        return await _student_page(page, email, notice=outcome, status_code=200 if outcome.tone == "ok" else 409)
    return _done(
        page, email, "student.reconciled", event_id=outcome.events[0], grants=outcome.grants, revokes=outcome.revokes
    )


@router.post("/{email}/note")
async def add_note(page: ActionDep, email: Email, note: NoteForm = "") -> HTMLResponse:
    rt = page.rt
    text = _note(note)
    if text is None:
        notice = Notice("bad", page.t("student.empty_note"))
        return await _student_page(page, email, notice=notice, status_code=422)

    def act() -> None:
        with rt.sessions() as session:
            student_id = student_id_of(session, email)
            if student_id is None:
                raise HTTPException(404)
            audit.record(session, page.operator, "note", at=rt.now(), note=text, student_id=student_id)

    await run_in_threadpool(act)
    return _done(page, email, "student.noted")
