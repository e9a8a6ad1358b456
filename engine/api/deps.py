"""Dependencies as named ``Annotated`` types."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from engine.pipeline.runtime import Runtime
from engine.service.operators import API_OPERATOR, locked_for, record_attempt


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


def require_admin(
    request: Request, rt: RuntimeDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """The admin token, from an address not locked out by failed sign-ins (the admin page's
    lockout: engine.service.operators). A wrong token counts as a failed sign-in; a missing one is no attempt."""
    expected = rt.settings.admin_api_token.get_secret_value()
    given = credentials.credentials if credentials else ""
    if not given:  # nothing to try: not an attempt
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "missing or invalid admin token", headers={"WWW-Authenticate": "Bearer"}
        )
    address = request.client.host if request.client else "unknown"
    wait = _lockout(rt, address)
    if wait is not None:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "too many failed sign-ins from this address: try again later",
            headers={"Retry-After": str(int(wait))},
        )
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        _count_failure(rt, address)
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "missing or invalid admin token", headers={"WWW-Authenticate": "Bearer"}
        )


def _lockout(rt: Runtime, address: str) -> float | None:
    try:
        with rt.sessions() as session:
            return locked_for(session, rt.settings, address, now=rt.now())
    except Exception:  # noqa: BLE001 - a database outage must not lock the admin out of /metrics and /healthz
        log.warning("sign-in lockout unknown (database unavailable): the token alone decides")
        return None


def _count_failure(rt: Runtime, address: str) -> None:
    try:
        with rt.sessions() as session:
            record_attempt(session, address, API_OPERATOR, ok=False, now=rt.now())
    except Exception:  # noqa: BLE001 - the 401 stands; only the count is lost
        log.warning("a failed sign-in could not be counted (database unavailable)")


AdminDep = Annotated[None, Depends(require_admin)]

# What every admin route may answer besides its own responses (OpenAPI).
ADMIN_RESPONSES: dict[int | str, dict] = {
    401: {"description": "missing or invalid admin token"},
    429: {"description": "too many failed sign-ins from this address: try again after Retry-After seconds"},
}
