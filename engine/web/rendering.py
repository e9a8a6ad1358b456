"""Templates and their helpers: every page is rendered with the operator, the language's
translator, the CSRF token and the filters the templates share."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from engine.statuses import EventStatus, RunStatus
from engine.web.access import Page
from engine.web.i18n import LANGUAGES, Translator
from engine.web.notices import PARAM, read_notice

HERE = Path(__file__).parent
HTMX = "htmx-2.0.11.min.js"  # vendored and pinned (static/); no CDN at run time

# The page loads nothing from elsewhere and runs no inline script: an injected tag does nothing.
# A page an operator saw stays theirs: no shared cache keeps it, no frame shows it.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

templates = Jinja2Templates(directory=HERE / "templates")
templates.env.globals.update(HTMX=HTMX, LANGUAGES=LANGUAGES)


def _when(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _age(value: datetime | None, t: Translator) -> str:
    """How long ago, in the page's language: "3 d", "5 h", "12 min", "40 s"."""
    if value is None:
        return t("common.never")
    seconds = max(0, int((datetime.now(UTC) - value).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return t("common.ago", amount=f"{seconds // size} {unit}")
    return t("common.ago", amount=f"{seconds} s")


def _query(request: Request, **changes: Any) -> str:
    """The current query string with ``changes`` (None removes a key): links of filters and pages."""
    params = dict(request.query_params)
    for key, value in changes.items():
        if value is None or value == "":
            params.pop(key, None)
        else:
            params[key] = str(value)
    return "?" + urlencode(params) if params else "?"


def _json(value: Any) -> str:
    """A value as the rules write it, on one line (accents kept; the template escapes it)."""
    return json.dumps(value, ensure_ascii=False, default=str)


# An event's or a step's status as a badge's colour: what ended well, what needs a person, and the rest.
_TONES = {
    EventStatus.PROCESSED: "ok",
    EventStatus.IGNORED: "ok",  # ignored is a decision of the rules
    RunStatus.DONE: "ok",
    EventStatus.NEEDS_ATTENTION: "bad",
    EventStatus.FAILED: "bad",  # a step's "failed" too
    EventStatus.REJECTED: "bad",
    "refused": "bad",  # a replay the page refused
}


def _tone(status: str | None) -> str:
    return _TONES.get(status or "", "warn")


templates.env.filters["when"] = _when
templates.env.filters["json"] = _json
templates.env.globals["query"] = _query
templates.env.globals["tone"] = _tone


def render(
    request: Request,
    template: str,
    *,
    t: Translator,
    operator: str | None = None,
    csrf_token: str | None = None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    if csrf_token and (outcome := read_notice(request.query_params.get(PARAM), csrf_token)):
        # An action's outcome, carried across its redirect (engine.web.notices).
        context.setdefault("flash", {"text": t(outcome[0], **outcome[1]), "event_id": outcome[2]})
    response = templates.TemplateResponse(
        request,
        template,
        {
            "t": t,
            "lang": t.language,
            "operator": operator,
            "csrf_token": csrf_token,
            "age": lambda value: _age(value, t),
            **context,
        },
        status_code=status_code,
    )
    response.headers.update(HEADERS)
    return response


def render_page(page: Page, template: str, *, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A signed-in operator's page: rendered with their name, their language and their CSRF token."""
    return render(
        page.request,
        template,
        t=page.t,
        operator=page.operator,
        csrf_token=page.csrf_token,
        status_code=status_code,
        **context,
    )
