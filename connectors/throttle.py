"""Client-side pacing shared by the HTTP connectors."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """At most ``rate`` acquisitions per second on average, bursts up to ``burst``.

    Implemented as GCRA ("virtual scheduling"): each caller reserves the next free slot
    under a lock and then sleeps until it, once. No polling loop, so float rounding or
    a clock that only moves when we sleep cannot make it spin. Thread-safe.
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.capacity = max(burst if burst is not None else rate, 1.0)
        self._interval = 1.0 / rate
        self._tolerance = (self.capacity - 1.0) * self._interval  # how far ahead a burst may run
        self._clock = clock
        self._sleep = sleep
        self._next = clock()  # theoretical arrival time of the next acquisition
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one slot, sleeping as needed; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            start = max(self._next, now)
            wait = max(0.0, start - self._tolerance - now)
            self._next = start + self._interval
        if wait > 0:
            self._sleep(wait)
        return wait
