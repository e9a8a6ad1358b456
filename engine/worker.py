"""Huey: the queues (Redis, or SQLite for the embedded default) and the worker's tasks.

Run a worker with ``engine worker``: it consumes the main queue and each lane's queue.

* Priority: events a student waits for interactively (``DISCORD_LINKED``,
  ``MEMBER_JOINED``, an admin's new code) are queued with a higher priority than bulk
  work (purchases, timers), so a free thread takes them first.
* Lanes: a connector listed in ``LANES`` (ManyChat) gets its own queue and threads; a
  main-queue thread hands a student over when their next step is that connector's, so it
  never sleeps in ManyChat's budget while other students' steps wait.
* A task that cannot get a database connection reschedules itself within seconds
  (backing off), instead of waiting for the sweep.
"""

from __future__ import annotations

import logging
import random
import threading

from huey import Huey, PriorityRedisHuey, SqliteHuey, crontab

from engine.pipeline.execution import is_connection_error, run_student
from engine.pipeline.processing import process_event
from engine.pipeline.runtime import Runtime, build_runtime
from engine.pipeline.sweep import sweep
from engine.settings import Settings, get_settings

log = logging.getLogger(__name__)

URGENT = 10  # Huey priority of interactive events; bulk work has 0
LANES = ("manychat",)  # connectors with a queue (and threads) of their own
_DB_RETRY_LIMIT = 40  # ~3 minutes of backing off; after that the sweep takes over


def make_huey(settings: Settings, lane: str | None = None) -> Huey:
    name = settings.queue_name if lane is None else f"{settings.queue_name}.{lane}"
    if settings.redis_url:
        # Bounded connects: with Redis down the webhook must answer (the sweep enqueues later).
        from redis import ConnectionPool

        pool = ConnectionPool.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=10)
        # results=False: nobody reads a task's return value; stored, they would pile up in Redis.
        return PriorityRedisHuey(name, connection_pool=pool, results=False)
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    return SqliteHuey(name, filename=str(settings.var_dir / "queue.db"), results=False)


huey = make_huey(get_settings())
lane_queues: dict[str, Huey] = {lane: make_huey(get_settings(), lane) for lane in LANES}
_runtime: Runtime | None = None
_runtime_lock = threading.Lock()
_lanes_running: set[str] = set()  # lanes this process consumes (set by `engine worker`)


def enqueue_event(event_id: int) -> None:
    """Queue an event; if the queue is down the sweep picks the event up later."""
    _enqueue(event_id, 0)


def enqueue_urgent(event_id: int) -> None:
    """Queue an event a student is waiting for (a link, a join, an admin's new code)."""
    _enqueue(event_id, URGENT)


def _enqueue(event_id: int, priority: int) -> None:
    try:
        process_event_task(event_id, priority=priority)
    except Exception:  # noqa: BLE001 - the event is stored; never lose the request over the queue
        log.warning("could not enqueue event %s; the sweep will retry", event_id, exc_info=True)


def schedule_drain(student_id: int, delay: float) -> None:
    try:
        drain_student_task.schedule((student_id,), delay=max(delay, 0.0))
    except Exception:  # noqa: BLE001
        log.warning("could not schedule the retry for student %s; the sweep will", student_id, exc_info=True)


_current_priority = threading.local()


def hand_off(student_id: int, lane: str) -> None:
    """Continue a student's steps in ``lane`` (at the priority of the task handing over)."""
    priority = getattr(_current_priority, "value", 0)
    try:
        lane_tasks[lane](student_id, priority=priority)
    except Exception:  # noqa: BLE001
        log.warning("could not hand student %s to lane %s; the sweep will", student_id, lane, exc_info=True)


def enable_lanes(lanes: set[str]) -> None:
    """Called by ``engine worker`` before it consumes the lane queues."""
    _lanes_running.update(lanes)
    if _runtime is not None:
        _runtime.lanes = {lane: lane for lane in _lanes_running}


def runtime() -> Runtime:
    """The process's runtime, built once (worker threads may ask for it at the same moment)."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = build_runtime(
                get_settings(), enqueue=enqueue_event, schedule_drain=schedule_drain, enqueue_urgent=enqueue_urgent
            )
            _runtime.hand_off = hand_off
            _runtime.lanes = {lane: lane for lane in _lanes_running}
    return _runtime


def _backoff(attempt: int) -> float:
    return min(0.5 * 2**attempt, 5.0) * random.uniform(0.8, 1.2)


def _retry_later(task, args: tuple, attempt: int, priority: int, exc: BaseException) -> None:
    """No database connection: try again in a few seconds (the sweep is the last resort)."""
    if attempt >= _DB_RETRY_LIMIT:
        raise exc
    delay = _backoff(attempt)
    log.warning("no database connection for %s%s (%s); retrying in %.1fs", task.name, args, exc, delay)
    task.schedule(args, {"attempt": attempt + 1}, delay=delay, priority=priority)


@huey.task(context=True)
def process_event_task(event_id: int, attempt: int = 0, task=None) -> str | None:
    priority = (task.priority if task else 0) or 0
    _current_priority.value = priority
    try:
        return process_event(runtime(), event_id)
    except Exception as exc:
        if not is_connection_error(exc):
            raise
        _retry_later(process_event_task, (event_id,), attempt, priority, exc)
        return None


@huey.task(context=True)
def drain_student_task(student_id: int, attempt: int = 0, task=None) -> None:
    _drain(drain_student_task, student_id, None, attempt, task)


def _drain(task_fn, student_id: int, lane: str | None, attempt: int, task) -> None:
    priority = (task.priority if task else 0) or 0
    _current_priority.value = priority
    try:
        run_student(runtime(), student_id, lane=lane)
    except Exception as exc:
        if not is_connection_error(exc):
            raise
        _retry_later(task_fn, (student_id,), attempt, priority, exc)


def _lane_task(lane: str):
    queue = lane_queues[lane]

    def run_lane(student_id: int, attempt: int = 0, task=None) -> None:
        _drain(lane_tasks[lane], student_id, lane, attempt, task)

    run_lane.__name__ = f"run_{lane}_lane"
    return queue.task(context=True, name=f"run_{lane}_lane")(run_lane)


lane_tasks = {lane: _lane_task(lane) for lane in LANES}


@huey.periodic_task(crontab(minute="*"))
def sweep_task() -> dict[str, int]:
    return sweep(runtime())
