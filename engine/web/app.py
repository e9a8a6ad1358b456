"""Puts the admin page on the API's application: its views under ``/ui``, its static files, the
root redirect, and HTML error pages for its paths (the API's own errors stay JSON)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from engine.web.access import PREFIX, CsrfRejected, LoginRequired, language_of
from engine.web.i18n import Translator
from engine.web.rendering import HERE, render
from engine.web.views import all_routers


def _is_page(request: Request) -> bool:
    return request.url.path == "/" or request.url.path.startswith(PREFIX)


def _error_page(request: Request, status_code: int, key: str) -> Response:
    t = Translator(language_of(request, request.app.state.runtime))
    return render(request, "error.html", t=t, status_code=status_code, message=t(key), code=status_code)


def add_admin_page(app: FastAPI) -> None:
    for router in all_routers():
        app.include_router(router)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="admin-static")

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse(f"{PREFIX}/", status_code=303)

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        target = f"{PREFIX}/login?next={exc.next_path}"
        if request.headers.get("hx-request"):
            # htmx swaps the body of a redirect in place; this makes it load the sign-in page instead.
            return Response(status_code=204, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

    @app.exception_handler(CsrfRejected)
    async def csrf_rejected(request: Request, exc: CsrfRejected) -> Response:
        return _error_page(request, 403, "errors.csrf")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if _is_page(request) and exc.status_code in (404, 405):
            return _error_page(
                request, exc.status_code, "errors.not_found" if exc.status_code == 404 else "errors.method"
            )
        return await http_exception_handler(request, exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        if _is_page(request):
            return _error_page(request, 422, "errors.invalid")
        return await request_validation_exception_handler(request, exc)
