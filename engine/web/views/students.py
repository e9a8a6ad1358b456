"""The Students view (``/ui/students``): one search box and the filters the overview links to, the
list newest first, 50 a page, updated in place by htmx (a plain GET form without JavaScript), and the
whole filtered list as CSV (``/ui/students.csv``). The list is the admin API's ``GET /admin/students``
(:func:`engine.service.students.student_page`); the one-student page is ``/ui/students/{email}``."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, StreamingResponse

from engine.pipeline.runtime import Runtime
from engine.rules.model import Rules
from engine.service import audit
from engine.service.schemas import PRINTABLE
from engine.service.students import (
    SEARCH_MAX_LENGTH,
    StudentFilters,
    count_students,
    export_csv,
    student_page,
)
from engine.web.access import PREFIX, PageDep
from engine.web.rendering import HEADERS, render_page

router = APIRouter(prefix=PREFIX, include_in_schema=False)

PER_PAGE = 50
MAX_PAGE = 100_000
LINKED = {"any": None, "yes": True, "no": False}


@dataclass(frozen=True)
class Chosen:
    """The filters as the form sends them: empty means "any"."""

    q: str
    product: str
    state: str
    linked: Literal["any", "yes", "no"]
    stuck: bool

    def for_service(self, stuck_days: int) -> StudentFilters:
        return StudentFilters(
            search=self.q.strip() or None,
            state=self.state or None,
            product=self.product or None,
            stuck_days=stuck_days if self.stuck else None,
            linked=LINKED[self.linked],
        )

    def given(self) -> dict[str, str | bool]:
        """The filters set, for the history entry of an export."""
        return {key: value for key, value in asdict(self).items() if value and value != "any"}


def chosen_filters(
    q: Annotated[str, Query(max_length=SEARCH_MAX_LENGTH, pattern=PRINTABLE)] = "",
    product: Annotated[str, Query(max_length=100, pattern=PRINTABLE)] = "",
    state: Annotated[str, Query(max_length=50, pattern=PRINTABLE)] = "",
    linked: Literal["any", "yes", "no"] = "any",
    stuck: bool = False,
) -> Chosen:
    # A product or state the rules do not define is no error: it matches what the database holds
    # (a state renamed since, say, which the overview still counts), most often nobody.
    return Chosen(q=q, product=product, state=state, linked=linked, stuck=stuck)


FiltersDep = Annotated[Chosen, Depends(chosen_filters)]


def _rules(rt: Runtime) -> Rules | None:
    rt.rules.reload_if_changed()  # the rules on disk: this process reloads them first (as the overview)
    return rt.rules.rules if rt.rules.available else None


def _options(defined: list[str], chosen: str) -> list[str]:
    """A select's values: the rules', and the one chosen if they lack it (a link from the overview)."""
    return defined + [chosen] if chosen and chosen not in defined else defined


def _fragment(request: Request) -> bool:
    """htmx asks for the results only; a history restore (back button, cache miss) needs the page."""
    return bool(request.headers.get("hx-request")) and not request.headers.get("hx-history-restore-request")


@router.get("/students")
async def list_students(
    page: PageDep,
    chosen: FiltersDep,
    page_number: Annotated[int, Query(alias="page", ge=1, le=MAX_PAGE)] = 1,
) -> HTMLResponse:
    rt = page.rt

    def read():
        rules = _rules(rt)
        filters = chosen.for_service(rt.settings.stuck_days)
        with rt.sessions() as session:
            found = student_page(
                session, rules, **asdict(filters), now=rt.now(), limit=PER_PAGE, offset=(page_number - 1) * PER_PAGE
            )
        return rules, found

    rules, found = await run_in_threadpool(read)
    context = {
        "view": found,
        "chosen": chosen,
        "page_number": page_number,
        "pages": max(1, math.ceil(found.total / PER_PAGE)),
        "stuck_days": rt.settings.stuck_days,
    }
    if _fragment(page.request):
        response = render_page(page, "students_results.html", **context)
    else:
        products = sorted(rules.products) if rules is not None else []
        states = list(rules.states) if rules is not None else []
        response = render_page(
            page,
            "students.html",
            products=_options(products, chosen.product),
            states=_options(states, chosen.state),
            **context,
        )
    response.headers["Vary"] = "HX-Request"  # the same address answers a page or its results
    return response


@router.get("/students.csv")
async def export_students(page: PageDep, chosen: FiltersDep) -> StreamingResponse:
    """The whole filtered list, one row per membership, streamed as it is read; the export (who,
    which filters, how many students) is written to the history first: it is personal data leaving."""
    rt = page.rt

    def start():
        rules = _rules(rt)
        filters = chosen.for_service(rt.settings.stuck_days)
        now = rt.now()
        with rt.sessions() as session:
            students = count_students(session, rules, filters, now=now)
            audit.record(
                session, page.operator, "students_exported", at=now, detail={**chosen.given(), "students": students}
            )
        return rules, filters, now

    rules, filters, now = await run_in_threadpool(start)
    name = f"students-{now:%Y%m%d-%H%M}.csv"
    response = StreamingResponse(
        export_csv(rt.sessions, rules, filters, now=now),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
    response.headers.update(HEADERS)
    return response
