"""Transaction conflicts: a deadlock or a serialization failure means the transaction lost a
race with another one. The database is fine; the work is retried, never counted as an outage
or as the event's fault."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError

log = logging.getLogger(__name__)
T = TypeVar("T")

_CONFLICT_SQLSTATES = frozenset({"40001", "40P01"})
CONFLICT_RETRIES = 3  # in place, before the task is handed back to the queue


def is_conflict(exc: BaseException) -> bool:
    """The transaction was rolled back by a conflict with another one (retry it, it is no outage)."""
    return isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) in _CONFLICT_SQLSTATES


def conflict_pause(attempt: int) -> float:
    """A short, jittered pause before retrying a conflicting transaction (attempt 1, 2, ...)."""
    return random.uniform(0.02, 0.1) * attempt


def retry_conflicts(work: Callable[[], T], what: str) -> T:
    """Run ``work`` (which takes and releases its own locks); on a conflict, run it again after a
    short pause, ``CONFLICT_RETRIES`` times in all, then let the conflict propagate (the queue
    retries the task later)."""
    for attempt in range(1, CONFLICT_RETRIES + 1):
        try:
            return work()
        except DBAPIError as exc:
            if not is_conflict(exc) or attempt == CONFLICT_RETRIES:
                raise
            pause = conflict_pause(attempt)
            log.warning(
                "transaction conflict on %s (%s: %s); retrying in %.2fs (attempt %d of %d)",
                what,
                exc.orig.sqlstate,
                str(exc.orig).splitlines()[0],
                pause,
                attempt + 1,
                CONFLICT_RETRIES,
            )
            time.sleep(pause)
    raise AssertionError("unreachable")
