"""Signing in and out, and the language switch."""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response

from engine.pipeline.runtime import Runtime
from engine.service import audit
from engine.service.operators import authenticate, close_session, locked_for, open_session, record_attempt
from engine.web.access import (
    LANG_COOKIE,
    PREFIX,
    SESSION_COOKIE,
    ActionDep,
    RuntimeDep,
    TranslatorDep,
    client_address,
)
from engine.web.i18n import Translator, chosen
from engine.web.rendering import render

router = APIRouter(prefix=PREFIX, include_in_schema=False)

LOGIN_CSRF_COOKIE = "engine_login_csrf"  # double-submit: a sign-in form posted from elsewhere fails


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path of the page itself, never another site."""
    if target and target.startswith(PREFIX + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return f"{PREFIX}/"


def _cookie_flags(rt: Runtime) -> dict:
    return {"httponly": True, "secure": not rt.settings.development, "samesite": "strict", "path": "/"}


def _form(request: Request, t: Translator, rt: Runtime, *, next_path: str, error: str | None, status_code: int):
    token = secrets.token_urlsafe(24)
    response = render(
        request, "sign_in.html", t=t, login_csrf=token, next_path=next_path, error=error, status_code=status_code
    )
    response.set_cookie(LOGIN_CSRF_COOKIE, token, max_age=3600, **_cookie_flags(rt))
    return response


@router.get("/login")
async def sign_in_form(request: Request, rt: RuntimeDep, t: TranslatorDep, next: str | None = None) -> Response:
    return _form(request, t, rt, next_path=safe_next(next), error=None, status_code=200)


@router.post("/login")
async def sign_in(
    request: Request,
    rt: RuntimeDep,
    t: TranslatorDep,
    name: Annotated[str, Form(max_length=100)] = "",
    secret: Annotated[str, Form(max_length=500)] = "",
    next: Annotated[str, Form(max_length=2000)] = "",
    login_csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    next_path = safe_next(next)
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not hmac.compare_digest(expected.encode(), login_csrf.encode()):
        return _form(request, t, rt, next_path=next_path, error=t("sign_in.expired_form"), status_code=400)
    address = client_address(request)

    def attempt() -> tuple[str, str | None, float | None]:
        now = rt.now()
        with rt.sessions() as session:
            wait = locked_for(session, rt.settings, address, now=now)
            if wait is not None:
                return "locked", None, wait
            operator = authenticate(rt.settings, name, secret)
            record_attempt(session, address, name, ok=operator is not None, now=now)
            if operator is None:
                return "refused", None, None
            token, _ = open_session(session, rt.settings, operator, now=now)
            audit.record(session, operator, "signed_in", at=now, detail={"address": address})
            return "ok", token, None

    outcome, token, wait = await run_in_threadpool(attempt)
    if outcome == "locked":
        minutes = max(1, round((wait or 60) / 60))
        response = _form(
            request, t, rt, next_path=next_path, error=t("sign_in.locked", minutes=minutes), status_code=429
        )
        response.headers["Retry-After"] = str(int(wait or 60))
        return response
    if outcome == "refused":
        return _form(request, t, rt, next_path=next_path, error=t("sign_in.refused"), status_code=401)
    response = RedirectResponse(next_path, status_code=303)
    response.set_cookie(SESSION_COOKIE, token, max_age=int(rt.settings.admin_session_hours * 3600), **_cookie_flags(rt))
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/")
    return response


@router.post("/logout")
async def sign_out(page: ActionDep) -> Response:
    token = page.request.cookies.get(SESSION_COOKIE)

    def close() -> None:
        with page.rt.sessions() as session:
            close_session(session, token)
            audit.record(session, page.operator, "signed_out", at=page.rt.now())

    await run_in_threadpool(close)
    response = RedirectResponse(f"{PREFIX}/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.post("/language")
async def switch_language(
    request: Request,
    rt: RuntimeDep,
    language: Annotated[str, Form(max_length=10)] = "",
    back: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Remembers the operator's choice over the browser's (a year; it is not a secret)."""
    response = RedirectResponse(safe_next(back), status_code=303)
    lang = chosen(language)
    if lang:
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, **{**_cookie_flags(rt), "httponly": False})
    return response
