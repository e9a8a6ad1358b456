"""The worker's tasks and this process's queue: built on first use (importing reads no settings),
with the runtime they run on and the task queue (:mod:`engine.worker.huey_queue`) it queues work on.

* Priority: an urgent event's task runs, schedules and hands off at its priority.
* Lanes: a main-queue thread hands a student over when their next step is a lane's connector, so
  it never sleeps in ManyChat's budget while other students' steps wait.
* A task that cannot get a database connection reschedules itself within seconds (backing off),
  instead of waiting for the sweep.
"""

from __future__ import annotations

import logging
import random
import threading

from huey import Huey, crontab
from huey.api import TaskWrapper

from engine.db.conflicts import is_conflict
from engine.pipeline.execution import is_retryable, run_student
from engine.pipeline.processing import process_event
from engine.pipeline.runtime import Runtime, build_runtime
from engine.settings import Settings, get_settings
from engine.worker.huey_queue import HueyQueue
from engine.worker.queues import LANES, Queue, make_huey

log = logging.getLogger(__name__)

_DB_RETRY_LIMIT = 40  # ~3 minutes of backing off; after that the sweep takes over

_runtime: Runtime | None = None
_runtime_lock = threading.Lock()
_queue: Queue | None = None
_queue_lock = threading.Lock()
_lanes_running: set[str] = set()  # lanes this process consumes (set by `engine worker`)


def get_queue() -> Queue:
    """The process's Huey queues and their tasks, built on first use: importing this module reads no
    settings, creates nothing."""
    global _queue
    with _queue_lock:
        if _queue is None:
            _queue = build_queue(get_settings())
    return _queue


def get_huey() -> Huey:
    return get_queue().huey


# This process's task queue: what the pipeline queues goes to the Huey queues above.
_task_queue = HueyQueue(get_queue)


def task_queue() -> HueyQueue:
    """The pipeline's queue in this process (its runtime's; the CLI's and the bot's to enqueue with)."""
    return _task_queue


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
            _runtime = build_runtime(get_settings(), queue=_task_queue)
            _runtime.lanes = {lane: lane for lane in _lanes_running}
    return _runtime


def _backoff(attempt: int) -> float:
    return min(0.5 * 2**attempt, 5.0) * random.uniform(0.8, 1.2)


def _retry_later(task: TaskWrapper, args: tuple, attempt: int, priority: int, exc: BaseException) -> None:
    """No database connection, or a conflict that outlasted its retries: the task goes back to the
    queue and runs again in a few seconds, its locks released meanwhile (the sweep is the last resort)."""
    if attempt >= _DB_RETRY_LIMIT:
        raise exc
    delay = _backoff(attempt)
    why = "transaction conflict" if is_conflict(exc) else "no database connection"
    log.warning("%s for %s%s (%s); retrying in %.1fs", why, task.name, args, exc, delay)
    task.schedule(args, {"attempt": attempt + 1}, delay=delay, priority=priority)


def _priority(task) -> int:
    priority = (task.priority if task is not None else 0) or 0
    _task_queue.running(priority)
    return priority


def process_event_task(event_id: int, attempt: int = 0, task=None) -> str | None:
    priority = _priority(task)
    try:
        return process_event(runtime(), event_id)
    except Exception as exc:
        if not is_retryable(exc):
            raise
        _retry_later(get_queue().process_event, (event_id,), attempt, priority, exc)
        return None


def drain_student_task(student_id: int, attempt: int = 0, task=None) -> None:
    _drain(get_queue().drain_student, student_id, None, attempt, task)


def manychat_lane_task(student_id: int, attempt: int = 0, task=None) -> None:
    _drain(get_queue().lanes["manychat"][1], student_id, "manychat", attempt, task)


_LANE_TASKS = {"manychat": manychat_lane_task}


def _drain(wrapper: TaskWrapper, student_id: int, lane: str | None, attempt: int, task) -> None:
    priority = _priority(task)
    try:
        run_student(runtime(), student_id, lane=lane)
    except Exception as exc:
        if not is_retryable(exc):
            raise
        _retry_later(wrapper, (student_id,), attempt, priority, exc)


def reconcile_task() -> int | None:
    """RECONCILE_SCHEDULE: compare the world with the rules; apply what RECONCILE_APPLY allows."""
    from engine.reconcile import scheduled_run

    return scheduled_run(runtime())


def hotmart_sync_task() -> int | None:
    """HOTMART_SYNC_SCHEDULE (with HOTMART_SYNC_ENABLED): catch up on Hotmart webhooks that never
    came; store what HOTMART_SYNC_APPLY allows."""
    from engine.catchup import scheduled_run

    return scheduled_run(runtime())


def build_queue(settings: Settings) -> Queue:
    """A queue with the worker's tasks (their names stay ``engine.worker.<function>``), and its lanes.
    The sweep is not a periodic task: each worker runs it every TIMER_POLL_SECONDS
    (engine.pipeline.sweep.SweepLoop)."""
    huey = make_huey(settings)
    if settings.reconcile_schedule != "off":
        huey.periodic_task(crontab(*settings.reconcile_schedule.split()))(reconcile_task)
    if settings.hotmart_sync_enabled and settings.hotmart_sync_schedule != "off":
        huey.periodic_task(crontab(*settings.hotmart_sync_schedule.split()))(hotmart_sync_task)
    lanes = {}
    for lane in LANES:
        lane_huey = make_huey(settings, lane)
        lanes[lane] = (lane_huey, lane_huey.task(context=True)(_LANE_TASKS[lane]))
    return Queue(
        huey,
        huey.task(context=True)(process_event_task),
        huey.task(context=True)(drain_student_task),
        lanes,
    )


# Huey names a task after its function ("<module>.<name>") and every queued message carries that
# name: the tasks keep the names they had before engine.worker became a package, so that a task
# queued by the running version is found by the next one.
for _task in (process_event_task, drain_student_task, manychat_lane_task, reconcile_task, hotmart_sync_task):
    _task.__module__ = "engine.worker"
