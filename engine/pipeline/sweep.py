"""The periodic sweep: fire due timers, re-enqueue what was lost, release held events.

Nothing waits forever: if Redis was down when an event was stored, or a worker died
holding it, the sweep enqueues it again (processing is idempotent).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import bindparam, func, select, union

from engine.db.locks import Namespace, try_session_lock
from engine.db.models import ActionRun, Event, Membership, ScheduledEvent, Student
from engine.pipeline import attention
from engine.pipeline.alerts import notify_alerts
from engine.pipeline.intake import store_internal
from engine.pipeline.rules_fit import fit_database
from engine.pipeline.runtime import Runtime
from engine.pipeline.silence import alert_webhook_silence
from engine.pipeline.watchdog import watch
from engine.sources import PLATFORMS, source_enabled
from engine.statuses import EventStatus, RunStatus, TimerStatus

log = logging.getLogger(__name__)
# Constants in the SQL, so that a generic plan still uses the partial index of open events.
_UNFINISHED = bindparam(
    "unfinished", (EventStatus.RECEIVED, EventStatus.PROCESSING), expanding=True, literal_execute=True
)


def fire_due_timers(rt: Runtime, limit: int = 500) -> list[int]:
    """Turn due timers into events; returns the new event ids (already enqueued)."""
    now = rt.now()
    fired: list[int] = []
    with rt.sessions.begin() as session:
        # The due timers first (a timer a worker is cancelling right now is left for the next sweep:
        # never wait on its row), then their memberships and students by id.
        due = (
            select(ScheduledEvent.id)
            .where(ScheduledEvent.status == TimerStatus.PENDING, ScheduledEvent.due_at <= now)
            .order_by(ScheduledEvent.due_at, ScheduledEvent.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        ids = session.scalars(due).all()
        rows = session.execute(
            select(ScheduledEvent, Membership, Student)
            .join(Membership, ScheduledEvent.membership_id == Membership.id)
            .join(Student, Membership.student_id == Student.id)
            .where(ScheduledEvent.id.in_(ids))
            .order_by(ScheduledEvent.due_at, ScheduledEvent.id)
        ).all()
        for timer, membership, student in rows:
            stored = store_internal(
                session,
                timer.event_type,
                email=student.email,
                student_id=student.id,
                product_key=membership.product_key,
                source="timer",
                dedupe_key=f"timer:{timer.id}",
                fields={"timer_id": timer.id, "due_at": timer.due_at.isoformat()},
                occurred_at=now,
            )
            timer.status = TimerStatus.FIRED
            timer.fired_event_id = stored.event_id
            if stored.event_id is not None:
                fired.append(stored.event_id)
    for event_id in fired:
        rt.queue.enqueue(event_id)
    return fired


def release_held(rt: Runtime) -> list[int]:
    """Held webhooks of each source turned on (HOTMART_ENABLED ...) are processed in creation order."""
    enabled = [name for name in PLATFORMS if source_enabled(rt.settings, name)]
    if not enabled:
        return []
    with rt.sessions.begin() as session:
        held = session.scalars(
            select(Event)
            .where(Event.status == EventStatus.HELD, Event.source.in_(enabled))
            .order_by(Event.occurred_at.asc().nulls_first(), Event.id)
        ).all()
        now = rt.now()
        for event in held:
            event.status, event.enqueued_at = EventStatus.RECEIVED, now
        ids = [event.id for event in held]
    for event_id in ids:
        rt.queue.enqueue(event_id)
    return ids


def requeue_stuck(rt: Runtime) -> list[int]:
    """Enqueue events nobody finished; each at most once per STUCK_AFTER_SECONDS, whichever process sweeps.

    ``enqueued_at`` records the re-enqueue in the same transaction that picks the events
    (rows another sweep is picking are skipped), so two processes sweeping at the same
    moment never queue the same event twice.
    """
    now = rt.now()
    with rt.sessions.begin() as session:
        overdue_retry = (
            select(ActionRun.event_id)
            .where(ActionRun.status == RunStatus.RETRYING)
            .group_by(ActionRun.event_id)
            .having(func.min(ActionRun.retry_at) < now - timedelta(minutes=1))
        )
        last_queued = func.coalesce(Event.enqueued_at, Event.received_at)
        cutoff = now - timedelta(seconds=rt.settings.stuck_after_seconds)
        # Two plain queries (each on its index of what is open), not one OR that reads every event.
        candidates = union(
            select(Event.id).where(Event.status.in_(_UNFINISHED), last_queued < cutoff),
            select(Event.id).where(Event.id.in_(overdue_retry), last_queued < cutoff),
        )
        stuck = (
            select(Event)
            .where(Event.id.in_(candidates))
            .order_by(Event.id)
            .limit(1000)
            .with_for_update(skip_locked=True)
        )
        events = session.scalars(stuck).all()
        for event in events:
            event.enqueued_at = now
        ids = [event.id for event in events]
    for event_id in ids:
        rt.queue.enqueue(event_id)
    return ids


def resume_waiting_for_rules(rt: Runtime) -> list[int]:
    """Events that arrived while no valid rules were loaded are replayed once valid rules are."""
    if not rt.rules.available:
        return []
    from engine.pipeline.replay import replay

    with rt.sessions() as session:
        ids = session.scalars(
            select(Event.id)
            .where(
                Event.status == attention.NEEDS_ATTENTION,
                Event.reason.startswith(attention.RULES_UNAVAILABLE, autoescape=True),
            )
            .order_by(Event.occurred_at.asc().nulls_first(), Event.id)
        ).all()
    replay(rt, ids, actor="worker")
    return list(ids)


@contextmanager
def _one_sweeper(rt: Runtime) -> Iterator[bool]:
    """Every worker process runs the periodic sweep; only one at a time does the work."""
    bind = rt.sessions.kw["bind"]
    if bind.dialect.name != "postgresql":
        yield True
        return
    with bind.connect() as connection, try_session_lock(connection, Namespace.SWEEP) as got:
        yield got


def sweep(rt: Runtime) -> dict[str, int]:
    # Every process: newest valid rules within a minute, events or not; a broken version alerts once.
    rt.rules.reload_if_changed()
    attention.report_rules_failure(rt)
    fit_database(rt, renames_only=True)  # declared renames before any event is planned on them
    with _one_sweeper(rt) as mine:
        if not mine:
            return {"resumed": 0, "released": 0, "timers": 0, "requeued": 0, "alerts": 0}
        return _sweep(rt)


def _sweep(rt: Runtime) -> dict[str, int]:
    resumed = resume_waiting_for_rules(rt)
    released = release_held(rt)
    fired = fire_due_timers(rt)
    stuck = requeue_stuck(rt)
    watch(rt)  # alerts on (and frees what it safely can of) students stuck behind an event or a lock
    alert_webhook_silence(rt)
    notified = notify_alerts(rt)
    if resumed or released or fired or stuck or notified:
        log.info(
            "sweep: %d resumed (rules back), %d released, %d timers fired, %d re-enqueued, %d alerts posted",
            len(resumed),
            len(released),
            len(fired),
            len(stuck),
            notified,
        )
    return {
        "resumed": len(resumed),
        "released": len(released),
        "timers": len(fired),
        "requeued": len(stuck),
        "alerts": notified,
    }


class SweepLoop:
    """Sweeps every ``TIMER_POLL_SECONDS`` on a daemon thread of a worker process.

    ``engine worker`` (and ``engine serve`` with its in-process worker) runs one, so timers and
    the recovery sweep fire within that many seconds (Huey's periodic tasks go by the minute).
    Several workers each run the loop; one at a time does the work (an advisory lock).
    """

    def __init__(
        self,
        runtime: Callable[[], Runtime],
        interval: float,
        *,
        run: Callable[[Runtime], object] = sweep,
        on_success: Callable[[], object] = lambda: None,
    ):
        self.interval = interval
        self._runtime, self._run, self._on_success = runtime, run, on_success
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sweep", daemon=True)

    def start(self) -> SweepLoop:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=self.interval + 5)

    def _loop(self) -> None:
        while not self._stopped.wait(self.interval):
            try:
                self._run(self._runtime())
            except Exception:  # noqa: BLE001 - a database blip must not end the sweeping
                log.exception("sweep failed; next one in %ss", self.interval)
                continue
            self._on_success()  # the worker's heartbeat: it swept, so it reaches the database
