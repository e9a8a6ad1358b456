"""Huey: the queues (Redis, or SQLite for the embedded default) and the worker's tasks.

Run a worker with ``engine worker``: it consumes the main queue and each lane's queue, and runs
the sweep every TIMER_POLL_SECONDS (engine.pipeline.sweep.SweepLoop; a bare
``huey_consumer engine.worker.huey`` would neither sweep nor serve the lanes).

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
import os
import random
import re
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from huey import Huey, PriorityRedisHuey, SqliteHuey, crontab
from huey.api import TaskWrapper
from huey.consumer import Consumer

from engine.db.conflicts import is_conflict
from engine.pipeline.execution import is_retryable, run_student
from engine.pipeline.processing import process_event
from engine.pipeline.runtime import Runtime, build_runtime
from engine.settings import Settings, get_settings

log = logging.getLogger(__name__)

URGENT = 10  # Huey priority of interactive events; bulk work has 0
LANES = ("manychat",)  # connectors with a queue (and threads) of their own
_DB_RETRY_LIMIT = 40  # ~3 minutes of backing off; after that the sweep takes over


class QueueOutage:
    """While Redis is down: one warning when it goes, one line when it is back, nothing between.

    Huey's consumer would log a traceback on every poll; those records are dropped (see
    :class:`_DropOutageTracebacks`) once the outage has been reported here.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.down_since: float | None = None
        self._next_try = 0.0
        self._backoff = 1.0

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            now = time.monotonic()
            if self.down_since is None:
                self.down_since = now
                self._backoff = 1.0
                log.warning("queue unreachable (%s: %s); retrying with backoff", type(exc).__name__, exc)
            else:
                self._backoff = min(self._backoff * 2, 30.0)
            self._next_try = now + self._backoff

    def succeeded(self) -> None:
        if self.down_since is None:
            return
        with self._lock:
            if self.down_since is not None:
                log.warning("queue reachable again after %.0f s", time.monotonic() - self.down_since)
                self.down_since = None

    def should_try(self) -> bool:
        """False while backing off (the scheduler skips its poll instead of failing again)."""
        return self.down_since is None or time.monotonic() >= self._next_try


def _queue_down(exc: BaseException) -> bool:
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return isinstance(exc, RedisConnectionError | RedisTimeoutError | ConnectionError | TimeoutError)


class QuietRedisHuey(PriorityRedisHuey):
    """PriorityRedisHuey reporting outages through :class:`QueueOutage` (the consumer backs off itself)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.outage = QueueOutage()

    def _watched(self, call, *args):
        try:
            result = call(*args)
        except Exception as exc:
            if _queue_down(exc):
                self.outage.failed(exc)
            raise
        self.outage.succeeded()
        return result

    def dequeue(self):
        return self._watched(super().dequeue)

    def enqueue(self, task):
        return self._watched(super().enqueue, task)

    def read_schedule(self, timestamp=None):
        if not self.outage.should_try():
            return []
        return self._watched(super().read_schedule, timestamp)


class _DropOutageTracebacks(logging.Filter):
    """Huey's per-poll tracebacks for a queue outage already reported once."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (exc is not None and _queue_down(exc))


_outage_filter = _DropOutageTracebacks()
for _name in ("huey", "huey.consumer", "huey.consumer.Worker", "huey.consumer.Scheduler"):
    logging.getLogger(_name).addFilter(_outage_filter)


def queue_key_patterns(queue_name: str) -> tuple[str, ...]:
    """Redis key patterns of a queue name and every name that starts with it (its lanes): the
    engine's own keys (``NAME:metrics``, ``NAME:ratelimit:...``) and Huey's, which carry the name
    stripped to letters, digits and underscores (``huey.redis.NAME``). For deleting one run's keys
    from a shared Redis database, never the whole database."""
    return f"{queue_name}*", f"huey.*.{re.sub(r'[^A-Za-z0-9_]', '', queue_name)}*"


def make_huey(settings: Settings, lane: str | None = None) -> Huey:
    name = settings.queue_name if lane is None else f"{settings.queue_name}.{lane}"
    if settings.redis_url:
        # Bounded connects: with Redis down the webhook must answer (the sweep enqueues later).
        from redis import ConnectionPool

        pool = ConnectionPool.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=10)
        # results=False: nobody reads a task's return value; stored, they would pile up in Redis.
        return QuietRedisHuey(name, connection_pool=pool, results=False)
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    return SqliteHuey(name, filename=str(settings.var_dir / "queue.db"), results=False)


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()
_queue: Queue | None = None
_queue_lock = threading.Lock()
_lanes_running: set[str] = set()  # lanes this process consumes (set by `engine worker`)
_current_priority = threading.local()


@dataclass(frozen=True)
class Queue:
    """The Huey instances (main queue and lanes) and the tasks registered on them."""

    huey: Huey
    process_event: TaskWrapper
    drain_student: TaskWrapper
    lanes: dict[str, tuple[Huey, TaskWrapper]] = field(default_factory=dict)


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
    _enqueue(event_id, 0)


def enqueue_urgent(event_id: int) -> None:
    """Queue an event a student is waiting for (a link, a join, an admin's new code)."""
    _enqueue(event_id, URGENT)


def _enqueue(event_id: int, priority: int) -> None:
    try:
        get_queue().process_event(event_id, priority=priority)
    except Exception as exc:  # noqa: BLE001 - the event is stored; never lose the request over the queue
        if _queue_down(exc):  # the outage itself was reported once (QueueOutage): no line per event
            log.debug("queue down; event %s waits for the sweep", event_id)
        else:
            log.warning("could not enqueue event %s; the sweep will retry", event_id, exc_info=True)


def schedule_drain(student_id: int, delay: float) -> None:
    try:
        get_queue().drain_student.schedule((student_id,), delay=max(delay, 0.0))
    except Exception:  # noqa: BLE001
        log.warning("could not schedule the retry for student %s; the sweep will", student_id, exc_info=True)


def schedule_event(event_id: int, delay: float) -> None:
    """Process the event again after ``delay`` seconds (a webhook still settling)."""
    priority = getattr(_current_priority, "value", 0)
    if short_delays.take(event_id, delay, priority):
        return
    _schedule_event(event_id, delay, priority)


def _schedule_event(event_id: int, delay: float, priority: int) -> None:
    try:
        get_queue().process_event.schedule((event_id,), delay=max(delay, 0.0), priority=priority)
    except Exception:  # noqa: BLE001
        log.warning("could not schedule event %s; the sweep will enqueue it", event_id, exc_info=True)


class ShortDelays:
    """Events due again within a few seconds (a settling webhook), queued by this process on time.

    Huey holds a delayed task in its schedule, which its scheduler reads once a second, so a 2 s
    settle window would end up to a second late. A worker process (:meth:`start`) queues them
    itself from a timer thread at their time. On a stop (:meth:`flush`) those not yet due go to
    Huey's schedule; a process killed outright leaves them to the sweep (STUCK_AFTER_SECONDS).
    """

    LONGEST = 10.0  # seconds; a longer delay goes to Huey's schedule as before

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._due: dict[int, tuple[float, int]] = {}  # event id -> (monotonic due time, priority)
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="short-delays", daemon=True)
                self._thread.start()

    def take(self, event_id: int, delay: float, priority: int) -> bool:
        """Whether this process queues the event itself (started, and the delay is short)."""
        if self._thread is None or delay > self.LONGEST:
            return False
        with self._wake:
            due = time.monotonic() + max(delay, 0.0)
            earlier = self._due.get(event_id)
            self._due[event_id] = (min(due, earlier[0]) if earlier else due, priority)
            self._wake.notify()
        return True

    def flush(self) -> None:
        """Hand what is not due yet to Huey's schedule (the process is stopping)."""
        with self._wake:
            pending, self._due = self._due, {}
            self._thread = None  # later delays go to Huey's schedule
            self._wake.notify()
        now = time.monotonic()
        for event_id, (due, priority) in pending.items():
            _schedule_event(event_id, due - now, priority)

    def _run(self) -> None:
        me = threading.current_thread()
        while True:
            with self._wake:
                if self._thread is not me:
                    return
                now = time.monotonic()
                ready = [(event_id, priority) for event_id, (due, priority) in self._due.items() if due <= now]
                for event_id, _ in ready:
                    del self._due[event_id]
                if not ready:
                    self._wake.wait(min((due for due, _ in self._due.values()), default=now + 1.0) - now)
                    continue
            for event_id, priority in ready:
                _enqueue(event_id, priority)


short_delays = ShortDelays()


def hand_off(student_id: int, lane: str) -> None:
    """Continue a student's steps in ``lane`` (at the priority of the task handing over)."""
    priority = getattr(_current_priority, "value", 0)
    try:
        get_queue().lanes[lane][1](student_id, priority=priority)
    except Exception:  # noqa: BLE001
        log.warning("could not hand student %s to lane %s; the sweep will", student_id, lane, exc_info=True)


def start_consumer(huey: Huey, **options) -> Consumer:
    """Start ``huey``'s consumer threads in the background; the process's signal handlers stay as
    they were. Huey's ``Consumer.start()`` takes SIGTERM/SIGINT/SIGHUP for the consumer whose
    ``run()`` loop acts on them: a consumer that is only started (the ManyChat lane of ``engine
    worker``, the in-process worker of ``engine serve``) would swallow a stop signal sent before
    the process's own handler (the main consumer's, uvicorn's) is in place, and the process would
    not stop."""
    import signal

    taken = [getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, name)]
    before = {signum: signal.getsignal(signum) for signum in taken}
    consumer = huey.create_consumer(**options)
    # Held while Huey's handlers are in place: one arriving then reaches the process's own handler.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, taken)
    try:
        consumer.start()
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    return consumer


class StopDeadline:
    """A stop that ends the process within ``seconds`` whatever its threads are doing.

    :meth:`begin` (on the stop signal) tells the runtime to stop waiting (``rt.stopping``) and
    arms a timer: the consumers get ``seconds`` to let their running tasks finish; past that the
    process exits at once. Nothing is lost by it: an unfinished task's event stays ``received``
    or ``processing`` in the database (the sweep queues it again), and the database drops the
    process's locks with its connections.
    """

    def __init__(self, seconds: float, on_begin: Callable[[], object] = lambda: None):
        self.seconds = seconds
        self._on_begin = on_begin
        self._began: float | None = None
        self._lock = threading.Lock()

    def begin(self) -> None:
        with self._lock:
            if self._began is not None:
                return
            self._began = time.monotonic()
        self._on_begin()
        timer = threading.Timer(self.seconds, self._exit)
        timer.daemon = True
        timer.start()

    def left(self) -> float:
        """Seconds left before the exit (the whole budget before :meth:`begin`)."""
        if self._began is None:
            return self.seconds
        return max(self.seconds - (time.monotonic() - self._began), 0.0)

    def _exit(self) -> None:
        log.warning("still busy %.0f s after the stop signal: exiting; unfinished work stays queued", self.seconds)
        logging.shutdown()
        os._exit(0)


class StoppingConsumer(Consumer):
    """Huey's consumer, where SIGTERM (like SIGINT) is a graceful stop bounded by a
    :class:`StopDeadline`: no new task is taken, running ones may finish until the deadline."""

    def __init__(self, huey: Huey, *, deadline: StopDeadline, **options):
        self.deadline = deadline
        super().__init__(huey, graceful_signal="TERM", shutdown_timeout=deadline.seconds, **options)

    def _handle_signal(self, signum, frame) -> None:
        if signum != getattr(signal, "SIGHUP", None):  # SIGHUP restarts the consumer, it is no stop
            self.deadline.begin()
        super()._handle_signal(signum, frame)


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
                get_settings(),
                enqueue=enqueue_event,
                schedule_drain=schedule_drain,
                schedule_event=schedule_event,
                enqueue_urgent=enqueue_urgent,
            )
            _runtime.hand_off = hand_off
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
    _current_priority.value = priority
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


def build_queue(settings: Settings) -> Queue:
    """A queue with the worker's tasks (their names stay ``engine.worker.<function>``), and its lanes.
    The sweep is not a periodic task: each worker runs it every TIMER_POLL_SECONDS
    (engine.pipeline.sweep.SweepLoop)."""
    huey = make_huey(settings)
    if settings.reconcile_schedule != "off":
        huey.periodic_task(crontab(*settings.reconcile_schedule.split()))(reconcile_task)
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
