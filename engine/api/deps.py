"""Dependencies as named ``Annotated`` types."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Query, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from engine.pipeline.runtime import Runtime
from engine.service.operators import API_OPERATOR, locked_for, record_attempt
from engine.service.schemas import MAX_ID


async def get_runtime(request: Request) -> Runtime:
    # async: a sync dependency costs a threadpool round trip on every webhook.
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_session(rt: RuntimeDep) -> Iterator[Session]:
    with rt.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]

log = logging.getLogger(__name__)

_bearer = HTTPBearer(auto_error=False, description="ADMIN_API_TOKEN")
# Its own scheme: the course platform's read-only token opens /api/v1 and nothing else.
_course_bearer = HTTPBearer(
    auto_error=False, scheme_name="CourseApiToken", description="COURSE_API_TOKEN (the course platform's read API)"
)
COURSE_OPERATOR = "course-api"  # a failed sign-in with a wrong course token is counted under this name


def require_admin(
    request: Request, rt: RuntimeDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """The admin token, from an address not locked out by failed sign-ins (the admin page's
    lockout: engine.service.operators). A wrong token counts as a failed sign-in; a missing one is no attempt."""
    _require_token(request, rt, credentials, rt.settings.admin_api_token.get_secret_value(), API_OPERATOR, "admin")


def require_course_token(
    request: Request,
    rt: RuntimeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_course_bearer)],
) -> None:
    """The course platform's read token (COURSE_API_TOKEN; unset: every request is refused), under the
    same lockout as the admin token. The admin token does not open these routes."""
    token = rt.settings.course_api_token.get_secret_value()
    _require_token(request, rt, credentials, token, COURSE_OPERATOR, "course API")


def _require_token(
    request: Request,
    rt: Runtime,
    credentials: HTTPAuthorizationCredentials | None,
    expected: str,
    operator: str,
    what: str,
) -> None:
    """``expected`` given as the bearer token, compared in constant time, from an address not locked out."""
    given = credentials.credentials if credentials else ""
    refused = HTTPException(
        status.HTTP_401_UNAUTHORIZED, f"missing or invalid {what} token", headers={"WWW-Authenticate": "Bearer"}
    )
    if not given:  # nothing to try: not an attempt
        raise refused
    address = request.client.host if request.client else "unknown"
    wait = _lockout(rt, address)
    if wait is not None:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "too many failed sign-ins from this address: try again later",
            headers={"Retry-After": str(int(wait))},
        )
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        _count_failure(rt, address, operator)
        raise refused


def _lockout(rt: Runtime, address: str) -> float | None:
    try:
        with rt.sessions() as session:
            return locked_for(session, rt.settings, address, now=rt.now())
    except Exception:  # noqa: BLE001 - a database outage must not lock the admin out of /metrics and /healthz
        log.warning("sign-in lockout unknown (database unavailable): the token alone decides")
        return None


def _count_failure(rt: Runtime, address: str, operator: str) -> None:
    try:
        with rt.sessions() as session:
            record_attempt(session, address, operator, ok=False, now=rt.now())
    except Exception:  # noqa: BLE001 - the 401 stands; only the count is lost
        log.warning("a failed sign-in could not be counted (database unavailable)")


AdminDep = Annotated[None, Depends(require_admin)]
CourseTokenDep = Annotated[None, Depends(require_course_token)]

# What every admin route may answer besides its own responses (OpenAPI).
ADMIN_RESPONSES: dict[int | str, dict] = {
    401: {"description": "missing or invalid admin token"},
    429: {"description": "too many failed sign-ins from this address: try again after Retry-After seconds"},
}
# What every course API route may answer besides its own responses (OpenAPI).
COURSE_RESPONSES: dict[int | str, dict] = {
    401: {"description": "missing or invalid course API token (COURSE_API_TOKEN; unset: always)"},
    429: ADMIN_RESPONSES[429],
}


# Paging of the admin lists: rows to skip, and the page size of the stored runs' lists
# (reconcile, the Hotmart sync).
Offset = Annotated[int, Query(ge=0, le=MAX_ID, description="Rows to skip.")]
RunsLimit = Annotated[int, Query(ge=1, le=100, description="Page size (max 100).")]
