"""A view's read: a service query run in the threadpool (the database is not async), in a session
of the page's database; a row that is not there is the 404 page."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import HTTPException
from fastapi.concurrency import run_in_threadpool

from engine.web.access import Page

T = TypeVar("T")


async def in_session(page: Page, query: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``query(session, *args, **kwargs)``, in the threadpool."""

    def read() -> T:
        with page.rt.sessions() as session:
            return query(session, *args, **kwargs)

    return await run_in_threadpool(read)


async def found_or_404(page: Page, query: Callable[..., T | None], *args: Any, **kwargs: Any) -> T:
    """:func:`in_session`, and the 404 page when it finds nothing."""
    found = await in_session(page, query, *args, **kwargs)
    if found is None:
        raise HTTPException(404)
    return found
