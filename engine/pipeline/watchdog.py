"""What should be moving and is not: students stuck behind an event or a lock.

Two signs, read by the sweep (once per TIMER_POLL_SECONDS, one process at a time), ``/healthz``,
``/metrics`` and ``engine doctor``:

- an event ``received`` or ``processing`` longer than ``STUCK_AFTER_SECONDS`` after it arrived
  (``retrying`` waits for its retry by design, ``held`` for HOTMART_ENABLED);
- a buyer's lock (``engine.db.locks.Namespace.BUYER``) held by a connection that has run nothing
  for longer than ``STUCK_LOCK_SECONDS``: a worker task waits between two transactions only for
  a remote call, and every remote call has a timeout far shorter.

Either raises one grouped alert (``pipeline.stuck``). What is freed by itself: a stuck event is
queued again by the sweep (``requeue_stuck``); an idle lock holder past ``STUCK_LOCK_SECONDS`` has
its database connection ended (``pg_terminate_backend``), which releases the lock (its task, if
its process still lives, connects again and takes the lock again before its next write). What is
not: an event that keeps failing is counted towards ``WORKER_MAX_FAILURES`` and becomes
``needs_attention``; a lock held by a connection that is busy (a query running) is left alone.
"""

from __future__ import annotations

import logging

from sqlalchemy import text

from engine.db.stuck import Stuck, find_stuck
from engine.pipeline.alerts import raise_alert
from engine.pipeline.runtime import Runtime

log = logging.getLogger(__name__)

ALERT_KIND = "pipeline.stuck"


def watch(rt: Runtime) -> Stuck:
    """The sweep's round: alert on what is stuck; end the connections that hold a buyer's lock idle
    for longer than STUCK_LOCK_SECONDS."""
    with rt.sessions.begin() as session:
        stuck = find_stuck(session, rt.settings, rt.now())
        if not stuck:
            return stuck
        for lock in stuck.idle_locks:
            if lock.idle_seconds >= rt.settings.stuck_lock_seconds:
                session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": lock.pid})
                log.warning(
                    "ended database connection %s: it held a student's lock %s for %.0f s",
                    lock.pid,
                    lock.state,
                    lock.idle_seconds,
                )
        message = stuck.describe(rt.settings)
        log.warning("stuck: %s", message)
        raise_alert(rt, session, kind=ALERT_KIND, message=message, group_key=ALERT_KIND)
    return stuck
