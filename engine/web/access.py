"""Who is looking: the signed-in operator (a session cookie), their language, and the CSRF check
every form and htmx request that changes something must pass."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool

from engine.pipeline.runtime import Runtime
from engine.service.operators import session_of
from engine.web.i18n import Translator, chosen, negotiate

SESSION_COOKIE = "engine_session"
LANG_COOKIE = "engine_lang"
PREFIX = "/ui"


class LoginRequired(Exception):
    """No session, or an expired one: the page sends the browser to the sign-in form."""

    def __init__(self, next_path: str):
        self.next_path = next_path


class CsrfRejected(Exception):
    """A change without this session's CSRF token: refused (403), nothing done."""


async def _runtime(request: Request) -> Runtime:
    return request.app.state.runtime  # the API's runtime: the page is served by the API process


RuntimeDep = Annotated[Runtime, Depends(_runtime)]


def language_of(request: Request, rt: Runtime) -> str:
    return chosen(request.cookies.get(LANG_COOKIE)) or negotiate(
        request.headers.get("accept-language"), rt.settings.engine_lang
    )


def translator(request: Request, rt: RuntimeDep) -> Translator:
    return Translator(language_of(request, rt))


TranslatorDep = Annotated[Translator, Depends(translator)]


@dataclass(frozen=True)
class Page:
    """What every view of a signed-in operator renders with."""

    request: Request
    rt: Runtime
    operator: str
    csrf_token: str
    t: Translator


def _signed_in(request: Request, rt: Runtime) -> tuple[str, str] | None:
    with rt.sessions() as session:
        signed = session_of(session, request.cookies.get(SESSION_COOKIE), now=rt.now())
    return (signed.operator, signed.csrf_token) if signed else None


async def signed_in_page(request: Request, rt: RuntimeDep, t: TranslatorDep) -> Page:
    found = await run_in_threadpool(_signed_in, request, rt)
    if found is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(quote(target, safe="/?=&"))
    operator, csrf_token = found
    return Page(request, rt, operator, csrf_token, t)


PageDep = Annotated[Page, Depends(signed_in_page)]


async def checked_page(page: PageDep) -> Page:
    """A signed-in operator's change: the form's ``csrf_token`` (or htmx's ``X-CSRF-Token``
    header) must be this session's."""
    request = page.request
    given = request.headers.get("x-csrf-token")
    if given is None:
        form = await request.form()
        given = str(form.get("csrf_token", ""))
    if not hmac.compare_digest(given.encode(), page.csrf_token.encode()):
        raise CsrfRejected()
    return page


ActionDep = Annotated[Page, Depends(checked_page)]


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"
