"""Huey: the queue (Redis, or SQLite for the embedded default) and the worker's tasks.

Run a worker with ``engine worker``: the Huey consumer plus the sweep every TIMER_POLL_SECONDS
(engine.pipeline.sweep.SweepLoop; a bare ``huey_consumer engine.worker.huey`` would not sweep).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from huey import Huey, RedisHuey, SqliteHuey, crontab
from huey.api import TaskWrapper

from engine.pipeline.alerts import notify_alerts
from engine.pipeline.execution import drain_student
from engine.pipeline.locks import student_lock
from engine.pipeline.processing import process_event
from engine.pipeline.runtime import Runtime, build_runtime
from engine.settings import Settings, get_settings

log = logging.getLogger(__name__)


def make_huey(settings: Settings) -> Huey:
    if settings.redis_url:
        # Bounded connects: with Redis down the webhook must answer (the sweep enqueues later).
        from redis import ConnectionPool

        pool = ConnectionPool.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=10)
        return RedisHuey(settings.queue_name, connection_pool=pool)
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    return SqliteHuey(settings.queue_name, filename=str(settings.var_dir / "queue.db"))


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()
_queue: Queue | None = None
_queue_lock = threading.Lock()


@dataclass(frozen=True)
class Queue:
    """The Huey instance and the tasks registered on it."""

    huey: Huey
    process_event: TaskWrapper
    drain_student: TaskWrapper


def get_queue() -> Queue:
    """The process's queue, built on first use: importing this module reads no settings, creates nothing."""
    global _queue
    with _queue_lock:
        if _queue is None:
            _queue = build_queue(get_settings())
    return _queue


def get_huey() -> Huey:
    return get_queue().huey


def __getattr__(name: str) -> object:
    # ``huey_consumer engine.worker.huey`` and ``from engine.worker import huey`` still work.
    if name == "huey":
        return get_huey()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def enqueue_event(event_id: int) -> None:
    """Queue an event; if the queue is down the sweep picks the event up later."""
    try:
        get_queue().process_event(event_id)
    except Exception:  # noqa: BLE001 - the event is stored; never lose the request over the queue
        log.warning("could not enqueue event %s; the sweep will retry", event_id, exc_info=True)


def schedule_drain(student_id: int, delay: float) -> None:
    try:
        get_queue().drain_student.schedule((student_id,), delay=max(delay, 0.0))
    except Exception:  # noqa: BLE001
        log.warning("could not schedule the retry for student %s; the sweep will", student_id, exc_info=True)


def schedule_event(event_id: int, delay: float) -> None:
    try:
        get_queue().process_event.schedule((event_id,), delay=max(delay, 0.0))
    except Exception:  # noqa: BLE001
        log.warning("could not schedule event %s; the sweep will enqueue it", event_id, exc_info=True)


def runtime() -> Runtime:
    """The process's runtime, built once (worker threads may ask for it at the same moment)."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = build_runtime(
                get_settings(), enqueue=enqueue_event, schedule_drain=schedule_drain, schedule_event=schedule_event
            )
    return _runtime


def process_event_task(event_id: int) -> str:
    return process_event(runtime(), event_id)


def drain_student_task(student_id: int) -> None:
    rt = runtime()
    with student_lock(rt.sessions, student_id):
        drain_student(rt, student_id)
    notify_alerts(rt)


def reconcile_task() -> int | None:
    """RECONCILE_SCHEDULE: compare the world with the rules; apply what RECONCILE_APPLY allows."""
    from engine.reconcile import scheduled_run

    return scheduled_run(runtime())


def build_queue(settings: Settings) -> Queue:
    """A queue with the worker's tasks (their names stay ``engine.worker.<function>``). The sweep is
    not a periodic task: each worker runs it every TIMER_POLL_SECONDS (engine.pipeline.sweep.SweepLoop)."""
    huey = make_huey(settings)
    if settings.reconcile_schedule != "off":
        huey.periodic_task(crontab(*settings.reconcile_schedule.split()))(reconcile_task)
    return Queue(huey, huey.task()(process_event_task), huey.task()(drain_student_task))
