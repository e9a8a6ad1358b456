"""The queues: Huey on Redis (a priority queue that reports outages once), or on SQLite for the
embedded default; the main queue and one per lane.

* Priority: events a student waits for interactively (``DISCORD_LINKED``, ``MEMBER_JOINED``, an
  admin's new code) are queued with :data:`URGENT`, ahead of bulk work (purchases, timers).
* Lanes: a connector listed in :data:`LANES` (ManyChat) gets its own queue and threads.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass, field

from huey import Huey, PriorityRedisHuey, SqliteHuey
from huey.api import TaskWrapper

from engine.settings import Settings

log = logging.getLogger(__name__)

URGENT = 10  # Huey priority of interactive events; bulk work has 0
LANES = ("manychat",)  # connectors with a queue (and threads) of their own


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


def queue_down(exc: BaseException) -> bool:
    """Whether ``exc`` says the queue (Redis) cannot be reached."""
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
            if queue_down(exc):
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
        return not (exc is not None and queue_down(exc))


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


@dataclass(frozen=True)
class Queue:
    """The Huey instances (main queue and lanes) and the tasks registered on them."""

    huey: Huey
    process_event: TaskWrapper
    drain_student: TaskWrapper
    lanes: dict[str, tuple[Huey, TaskWrapper]] = field(default_factory=dict)
