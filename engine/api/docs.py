"""``/docs`` and ``/openapi.json``: public in development; in production behind the admin token
(or off), as ``API_DOCS`` says. The schema lists the states and products the loaded rules define.

Behind the token they accept ``Authorization: Bearer $ADMIN_API_TOKEN`` (curl) or HTTP Basic with
the token as the password (a browser prompts, then sends it again when Swagger UI fetches the
schema).
"""

from __future__ import annotations

import base64
import binascii
import copy
import hmac
from typing import TYPE_CHECKING, Any, Literal

from fastapi import FastAPI, HTTPException, Request, status
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

if TYPE_CHECKING:
    from engine.rules.model import Rules

DOCS_URL, OPENAPI_URL = "/docs", "/openapi.json"


def docs_urls(mode: str) -> dict[str, str | None]:
    """FastAPI's own (unauthenticated) docs routes: only when the docs are public."""
    public = mode == "public"
    return {
        "docs_url": DOCS_URL if public else None,
        "redoc_url": "/redoc" if public else None,
        "openapi_url": OPENAPI_URL if public else None,
    }


def _given_token(request: Request) -> str:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return credentials.strip()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return ""
        return decoded.partition(":")[2]
    return ""


def _require_token(request: Request) -> None:
    expected = request.app.state.runtime.settings.admin_api_token.get_secret_value()
    given = _given_token(request)
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "the API docs need the admin token",
            headers={"WWW-Authenticate": 'Basic realm="engine API docs", charset="UTF-8"'},
        )


def add_protected_docs(app: FastAPI) -> None:
    """``/docs`` and ``/openapi.json`` behind the admin token (not themselves in the schema)."""

    @app.get(OPENAPI_URL, include_in_schema=False)
    async def openapi(request: Request) -> JSONResponse:
        _require_token(request)
        return JSONResponse(app.openapi())

    @app.get(DOCS_URL, include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        _require_token(request)
        return get_swagger_ui_html(openapi_url=OPENAPI_URL, title=f"{app.title} - docs")


RULES_ENUM = "x-rules-enum"
_RULES_VALUES = {"states": lambda rules: rules.states, "products": lambda rules: rules.products}


def rules_enum(values: Literal["states", "products"]) -> dict[str, str]:
    """A parameter's ``json_schema_extra``: its values are the loaded rules' ``states`` or
    ``products`` (the route refuses any other with 422); :func:`add_rules_enums` lists them."""
    return {RULES_ENUM: values}


def add_rules_enums(app: FastAPI) -> None:
    """``app.openapi()`` with each :func:`rules_enum` parameter an ``enum`` of the loaded rules'
    values, so the schema says which values the API accepts; made again when the rules change."""
    generate = app.openapi
    made: list[tuple[Rules | None, dict[str, Any]]] = []  # the rules it was made for, the schema

    def openapi() -> dict[str, Any]:
        repository = app.state.runtime.rules
        rules = repository.rules if repository.available else None
        if not made or made[0][0] is not rules:
            schema = copy.deepcopy(generate())
            _fill_rules_enums(schema, rules)
            made[:] = [(rules, schema)]
        return made[0][1]

    app.openapi = openapi  # type: ignore[method-assign]


def _fill_rules_enums(schema: dict[str, Any], rules: Rules | None) -> None:
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                values = parameter["schema"].pop(RULES_ENUM, None)
                if values is not None and rules is not None:
                    parameter["schema"] = {
                        "type": "string",
                        "enum": sorted(_RULES_VALUES[values](rules)),
                        "title": parameter["schema"].get("title"),
                    }
