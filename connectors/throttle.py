"""Client-side pacing shared by the HTTP connectors.

All pacing is GCRA ("virtual scheduling"): a key remembers the theoretical arrival time
(TAT) of its next request; a caller reserves the next free slot and is told how long to
wait for it, once. No polling loop, so float rounding or a clock that only moves when we
sleep cannot make it spin.

Two stores of that state, one interface (:class:`Limiter`):

* :class:`LocalLimiter` keeps it in this process (the embedded mode: one process);
* :class:`RedisLimiter` keeps it in Redis, updated by one Lua script, so every worker
  process on every machine draws from the same budget (Discord's 50/s is per bot, not
  per process).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol


class Limiter(Protocol):
    """Where the pacing state lives; ``shared`` is true when other processes see it too."""

    shared: bool

    def reserve(self, key: str, rate: float, burst: float = 1.0) -> float:
        """Take the next slot of ``key`` (``rate`` per second, bursts up to ``burst``);
        returns the seconds to wait before using it."""
        ...

    def block(self, key: str, seconds: float) -> None:
        """Nobody may use ``key`` for ``seconds`` (the other side answered 429)."""
        ...


def _interval_and_tolerance(rate: float, burst: float) -> tuple[float, float]:
    if rate <= 0:
        raise ValueError("rate must be positive")
    interval = 1.0 / rate
    return interval, (max(burst, 1.0) - 1.0) * interval


class LocalLimiter:
    """GCRA state in this process. Thread-safe."""

    shared = False

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._tat: dict[str, float] = {}
        self._lock = threading.Lock()

    def reserve(self, key: str, rate: float, burst: float = 1.0) -> float:
        interval, tolerance = _interval_and_tolerance(rate, burst)
        with self._lock:
            now = self._clock()
            tat = max(self._tat.get(key, now), now)
            self._tat[key] = tat + interval
        return max(0.0, tat - tolerance - now)

    def block(self, key: str, seconds: float) -> None:
        with self._lock:
            now = self._clock()
            # No burst may start before the block ends: the tolerance is unknown here, so
            # push far enough that any reasonable burst is covered by the next reserve.
            self._tat[key] = max(self._tat.get(key, now), now + seconds)


# KEYS[1] the key; ARGV interval and tolerance in microseconds, and a block in microseconds
# (0: reserve a slot). Redis's clock is the one clock every process agrees on. The reply is
# the wait in microseconds, as a string (Lua numbers would be cut to integers anyway).
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local block = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local wait = 0
if block > 0 then
  if tat < now + block then tat = now + block end
else
  wait = tat - tolerance - now
  if wait < 0 then wait = 0 end
  tat = tat + interval
end
redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', math.floor((tat - now) / 1000) + 1000)
return tostring(wait)
"""


class RedisLimiter:
    """GCRA state in Redis: one budget for every process using the same ``prefix``.

    One Lua script does read-modify-write atomically, so two processes can never take the
    same slot. A Redis outage must not stop the engine: the limiter then falls back to its
    process-local state (and logs once) until Redis answers again.
    """

    shared = True

    def __init__(self, client, prefix: str, *, fallback: LocalLimiter | None = None):
        self._client = client
        self._prefix = prefix
        self._script = client.register_script(_GCRA)
        self._fallback = fallback or LocalLimiter()
        self._warned = False

    @classmethod
    def from_url(cls, url: str, prefix: str) -> RedisLimiter:
        from redis import Redis

        return cls(Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5), prefix)

    def _run(self, key: str, interval: float, tolerance: float, block: float) -> float:
        from redis.exceptions import RedisError

        try:
            reply = self._script(
                keys=[f"{self._prefix}:ratelimit:{key}"],
                args=[int(interval * 1e6), int(tolerance * 1e6), int(block * 1e6)],
            )
        except RedisError:
            if not self._warned:
                import logging

                logging.getLogger(__name__).warning(
                    "rate-limit store unreachable: pacing per process until it is back", exc_info=True
                )
                self._warned = True
            raise
        self._warned = False
        return float(reply) / 1e6

    def reserve(self, key: str, rate: float, burst: float = 1.0) -> float:
        interval, tolerance = _interval_and_tolerance(rate, burst)
        try:
            return self._run(key, interval, tolerance, 0.0)
        except Exception:  # noqa: BLE001 - pace locally rather than not at all
            return self._fallback.reserve(key, rate, burst)

    def block(self, key: str, seconds: float) -> None:
        if seconds <= 0:
            return
        try:
            self._run(key, 0.0, 0.0, seconds)
        except Exception:  # noqa: BLE001
            self._fallback.block(key, seconds)


class TokenBucket:
    """At most ``rate`` acquisitions per second on average, bursts up to ``burst``;
    a single key of a :class:`LocalLimiter` that sleeps for its caller. Thread-safe."""

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        _interval_and_tolerance(rate, 1.0)
        self.rate = rate
        self.capacity = max(burst if burst is not None else rate, 1.0)
        self._limiter = LocalLimiter(clock)
        self._sleep = sleep

    def acquire(self) -> float:
        """Take one slot, sleeping as needed; returns the seconds waited."""
        wait = self._limiter.reserve("bucket", self.rate, self.capacity)
        if wait > 0:
            self._sleep(wait)
        return wait
