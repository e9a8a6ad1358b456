"""The events: the event log filtered and paged (``/ui/events``), one event in full with what the
current rules would do with it (``/ui/events/{id}``), and replays — of one event, or of every
``needs_attention`` event of a cause or since a time — each shown first, then confirmed.

Reads and replays go through the same service functions as ``GET /admin/events`` and
``POST /admin/replay`` (and ``engine events``, ``engine replay``, ``engine dry-run --event``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Path, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic.functional_validators import BeforeValidator

from engine.service import events, replays
from engine.service.audit import page_actor
from engine.service.replan import redacted_replan
from engine.service.schemas import MAX_ID, PRINTABLE
from engine.statuses import EventStatus
from engine.web.access import PREFIX, ActionDep, Page, PageDep
from engine.web.notices import notice_location
from engine.web.rendering import render_page

router = APIRouter(prefix=PREFIX, include_in_schema=False)

PAGE_SIZE = 50
MAX_PAGE = 100_000
PREVIEW_IDS = 10  # a bulk replay previews its first events only (each a dry-run: about 6 ms)
NOTE_LENGTH = 1000

# How a status reads at a glance; the badge always writes the status itself.
# A filter left empty in the form arrives as ``status=``: "any".
_ANY_STATUS = "^(" + "|".join(status.value for status in EventStatus) + ")?$"
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_MOMENT = re.compile(r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2})?)?")
_NO_NUL = r"^[^\x00]*$"  # a reason is the engine's text, newlines and all: only what PostgreSQL refuses is refused


def _blank_or(pattern: re.Pattern[str], what: str):
    """An empty form field is no filter; anything else must look like ``what`` (pydantic then checks
    the calendar: month 13 fails), so that a number is never read as a Unix timestamp."""

    def check(value: Any) -> Any:
        if value is None or value == "":
            return None
        if not isinstance(value, str) or not pattern.fullmatch(value.strip()):
            raise ValueError(f"expected {what}")
        return value.strip()

    return BeforeValidator(check)


Day = Annotated[date | None, _blank_or(_DAY, "a date, YYYY-MM-DD")]
Moment = Annotated[datetime | None, _blank_or(_MOMENT, "a time, YYYY-MM-DDTHH:MM (UTC)")]
EventPath = Annotated[int, Path(ge=1, le=MAX_ID)]
Note = Annotated[str, Form(max_length=NOTE_LENGTH)]
Reason = Annotated[str, Query(max_length=2000, pattern=_NO_NUL)]


def _utc(moment: datetime | None) -> datetime | None:
    """The page writes every time in UTC: a time typed without a zone is UTC."""
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


@dataclass(frozen=True)
class ListFilters:
    status: str
    type: str
    product: str
    q: str
    reason: str
    received_from: date | None
    received_to: date | None

    def service(self) -> dict[str, Any]:
        """As :func:`engine.service.events.event_filters` takes them; ``received_to`` is inclusive."""
        until = None
        if self.received_to is not None and self.received_to < date.max:
            until = datetime.combine(self.received_to + timedelta(days=1), time.min, UTC)
        return {
            "status": self.status or None,
            "type": self.type or None,
            "product": self.product or None,
            "text": self.q or None,
            "reason": self.reason or None,
            "since": datetime.combine(self.received_from, time.min, UTC) if self.received_from else None,
            "until": until,
        }


def _list_filters(
    status: Annotated[str, Query(pattern=_ANY_STATUS)] = "",
    type: Annotated[str, Query(max_length=60, pattern=PRINTABLE)] = "",
    product: Annotated[str, Query(max_length=100, pattern=PRINTABLE)] = "",
    q: Annotated[str, Query(max_length=320, pattern=PRINTABLE)] = "",
    reason: Reason = "",
    received_from: Annotated[Day, Query()] = None,
    received_to: Annotated[Day, Query()] = None,
) -> ListFilters:
    return ListFilters(status, type.strip(), product.strip(), q.strip(), reason, received_from, received_to)


FiltersDep = Annotated[ListFilters, Depends(_list_filters)]


def _rules(page: Page):
    """The newest valid rules on disk (this process reloads them first), or None."""
    page.rt.rules.reload_if_changed()
    return page.rt.rules.rules if page.rt.rules.available else None


# --- the list ---------------------------------------------------------------------------------


@router.get("/events")
async def list_events(
    page: PageDep,
    filters: FiltersDep,
    page_number: Annotated[int, Query(alias="page", ge=1, le=MAX_PAGE)] = 1,
) -> HTMLResponse:
    rt, headers = page.rt, page.request.headers
    # htmx asks for the table alone (the filters and the pager swap it in place); restoring a page
    # from the browser's history, it asks for all of it.
    partial = bool(headers.get("hx-request")) and not headers.get("hx-history-restore-request")

    def read():
        with rt.sessions() as session:
            listing = events.event_page(
                session, rt.settings, limit=PAGE_SIZE, offset=(page_number - 1) * PAGE_SIZE, **filters.service()
            )
            if partial:
                return listing, [], [], []
            types = events.event_types(session)
            causes = events.attention_causes(session, rt.settings)
        rules = _rules(page)
        return listing, types, causes, sorted(rules.products) if rules else []

    listing, types, causes, products = await run_in_threadpool(read)
    pages = max(1, -(-listing.total // PAGE_SIZE))
    context = {
        "listing": listing,
        "filters": filters,
        "page_number": page_number,
        "pages": pages,
        "statuses": [status.value for status in EventStatus],
        "types": types,
        "products": products,
        "causes": causes,
    }
    response = render_page(page, "events_table.html" if partial else "events.html", **context)
    response.headers["Vary"] = "HX-Request"
    return response


# --- bulk replay ------------------------------------------------------------------------------


@router.get("/events/replay")
async def preview_bulk_replay(
    page: PageDep,
    reason: Reason = "",
    since: Annotated[Moment, Query()] = None,
) -> HTMLResponse:
    """What a replay of the needs_attention events of ``reason`` and/or since ``since`` would do:
    how many, which (the first ones, each with what the current rules would make of it)."""
    rt, since = page.rt, _utc(since)

    def preview():
        try:
            ids = replays.choose_events(rt, status=EventStatus.NEEDS_ATTENTION, reason=reason or None, since=since)
        except replays.RulesUnavailable as exc:
            return None, None, None, str(exc)
        shown = replays.replay_events(rt, ids[:PREVIEW_IDS], dry_run=True, actor=page_actor(page.operator))
        return ids, replays.replay_out(rt, shown, dry_run=True), rt.rules.version, None

    ids, shown, version, rules_error = await run_in_threadpool(preview)
    return render_page(
        page,
        "events_replay.html",
        ids=ids,
        shown=shown,
        rules_version=version,
        rules_error=rules_error,
        reason=reason,
        since=since,
        up_to=max(ids) if ids else None,
        note_length=NOTE_LENGTH,
    )


@router.post("/events/replay")
async def bulk_replay(
    page: ActionDep,
    up_to: Annotated[int, Form(ge=1, le=MAX_ID)],
    reason: Annotated[str, Form(max_length=2000, pattern=_NO_NUL)] = "",
    since: Annotated[Moment, Form()] = None,
    note: Note = "",
) -> HTMLResponse:
    """Replays what the preview showed: the same filters, and no event stored after it."""
    rt, since = page.rt, _utc(since)

    def run():
        try:
            ids = replays.choose_events(
                rt, status=EventStatus.NEEDS_ATTENTION, reason=reason or None, since=since, up_to_id=up_to
            )
        except replays.RulesUnavailable as exc:
            return None, str(exc)
        results = replays.replay_events(
            rt, ids, dry_run=False, actor=page_actor(page.operator), note=note.strip() or None
        )
        return replays.replay_out(rt, results, dry_run=False), None

    outcome, rules_error = await run_in_threadpool(run)
    if outcome is not None and outcome.count and not any(item.refused for item in outcome.items):
        # Done: to the list it came from, the outcome carried across (a refresh replays nothing again).
        target = notice_location(
            "/ui/events?status=needs_attention",
            page.csrf_token,
            "events.replayed",
            count=outcome.count,
            version=outcome.rules_version or "—",
        )
        return RedirectResponse(target, status_code=303)
    return render_page(page, "event_replay_result.html", outcome=outcome, rules_error=rules_error, event_id=None)


# --- one event --------------------------------------------------------------------------------


@router.get("/events/{event_id}")
async def show_event(page: PageDep, event_id: EventPath) -> HTMLResponse:
    rt = page.rt

    def read():
        rules = _rules(page)
        with rt.sessions() as session:
            detail = events.event_detail(session, rt.settings, event_id)
            if detail is None:
                return None
            history = events.event_history(session, rt.settings, event_id)
            now = (
                redacted_replan(session, rt.settings, event_id, rules, now=rt.now(), rules_version=rt.rules.version)
                if rules is not None
                else None
            )
        return detail, history, now

    found = await run_in_threadpool(read)
    if found is None:
        raise HTTPException(404)
    detail, history, now = found
    return render_page(
        page,
        "event.html",
        event=detail,
        history=history,
        now=now,
        rules_error=rt.rules.load_error,
        payload=_pretty(detail.payload),
        headers=_pretty(detail.headers) if detail.headers else None,
    )


@router.get("/events/{event_id}/replay")
async def preview_replay(page: PageDep, event_id: EventPath) -> HTMLResponse:
    """What replaying this event would decide, and the full dry-run, before the operator confirms;
    htmx loads it as a panel of the event page, a plain link as a page of its own."""
    rt = page.rt

    def preview():
        try:
            replays.choose_events(rt, status=None, ids=[event_id])  # loads the newest rules first
        except replays.RulesUnavailable as exc:
            return None, None, str(exc)
        results = replays.replay_events(rt, [event_id], dry_run=True, actor=page_actor(page.operator))
        with rt.sessions() as session:
            now = redacted_replan(
                session, rt.settings, event_id, rt.rules.rules, now=rt.now(), rules_version=rt.rules.version
            )
        return replays.replay_out(rt, results, dry_run=True), now, None

    try:
        shown, now, rules_error = await run_in_threadpool(preview)
    except LookupError:
        raise HTTPException(404) from None
    panel = bool(page.request.headers.get("hx-request"))
    return render_page(
        page,
        "event_replay_panel.html" if panel else "event_replay.html",
        event_id=event_id,
        shown=shown,
        now=now,
        rules_error=rules_error,
        note_length=NOTE_LENGTH,
    )


@router.post("/events/{event_id}/replay")
async def replay_event(page: ActionDep, event_id: EventPath, note: Note = "") -> HTMLResponse:
    rt = page.rt

    def run():
        try:
            replays.choose_events(rt, status=None, ids=[event_id])
        except replays.RulesUnavailable as exc:
            return None, str(exc)
        results = replays.replay_events(
            rt, [event_id], dry_run=False, actor=page_actor(page.operator), note=note.strip() or None
        )
        return replays.replay_out(rt, results, dry_run=False), None

    try:
        outcome, rules_error = await run_in_threadpool(run)
    except LookupError:
        raise HTTPException(404) from None
    if outcome is not None and outcome.count and not any(item.refused for item in outcome.items):
        target = notice_location(
            f"/ui/events/{event_id}",
            page.csrf_token,
            "events.replayed",
            count=outcome.count,
            version=outcome.rules_version or "—",
        )
        return RedirectResponse(target, status_code=303)
    return render_page(page, "event_replay_result.html", outcome=outcome, rules_error=rules_error, event_id=event_id)


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)
