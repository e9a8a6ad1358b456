"""The token bucket the HTTP connectors pace themselves with."""

from __future__ import annotations

import os
import threading
import time
import uuid

import pytest

from connectors.throttle import LocalLimiter, RedisLimiter, TokenBucket


class FakeTime:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_bursts_then_paces_at_the_rate():
    fake = FakeTime()
    bucket = TokenBucket(10, burst=3, clock=fake.clock, sleep=fake.sleep)
    waits = [bucket.acquire() for _ in range(8)]
    assert waits[:3] == [0, 0, 0]
    assert all(abs(w - 0.1) < 1e-9 for w in waits[3:])
    assert abs(fake.now - 1000.5) < 1e-9  # 5 paced acquisitions at 10/s


def test_float_rounding_never_loops_forever():
    # Rates whose reciprocal is not exact in binary used to leave 0.999... tokens forever.
    for rate in (3.0, 7.0, 50.0, 0.3):
        fake = FakeTime(start=1e9)
        bucket = TokenBucket(rate, burst=1.0, clock=fake.clock, sleep=fake.sleep)
        for _ in range(200):
            bucket.acquire()
        assert len(fake.sleeps) <= 199
        assert abs((fake.now - 1e9) - 199 / rate) < 1e-3


def test_local_limiter_keys_are_independent():
    fake = FakeTime()
    limiter = LocalLimiter(fake.clock)
    assert limiter.reserve("a", 10) == 0
    assert abs(limiter.reserve("a", 10) - 0.1) < 1e-9
    assert limiter.reserve("b", 10) == 0  # another endpoint, its own budget
    limiter.block("b", 2.0)
    assert abs(limiter.reserve("b", 10) - 2.0) < 1e-9


@pytest.mark.slow
@pytest.mark.integration
def test_two_redis_limiters_never_exceed_the_budget_together(redis_url):
    """Two worker processes' limiters on one Redis: their requests together stay within the rate."""
    import redis

    client_a, client_b = redis.Redis.from_url(redis_url), redis.Redis.from_url(redis_url)
    prefix = f"{os.environ['QUEUE_NAME']}:{uuid.uuid4().hex[:6]}"
    limiters = [RedisLimiter(client_a, prefix), RedisLimiter(client_b, prefix)]
    rate, per_thread = 50.0, 25
    sent: list[float] = []
    lock = threading.Lock()

    def spend(limiter: RedisLimiter) -> None:
        for _ in range(per_thread):
            wait = limiter.reserve("discord:global", rate, 1.0)
            # The slot the limiter granted, read before sleeping: how late a thread wakes on a
            # busy machine (the suite runs in parallel) is the scheduler's doing, not the limiter's.
            slot = time.monotonic() + wait
            time.sleep(wait)
            with lock:
                sent.append(slot)

    threads = [threading.Thread(target=spend, args=(limiters[i % 2],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sent.sort()
    assert len(sent) == 4 * per_thread
    # Any 1-second window holds at most rate slots (+1 for the slot on its edge, +1 for the time
    # between Redis's answer and reading the clock), and the run took as long as the rate needs.
    worst = max(sum(1 for t in sent if start <= t < start + 1.0) for start in sent)
    assert worst <= rate + 2
    assert sent[-1] - sent[0] >= (len(sent) - 1) / rate - 0.05
    # A 429 seen by one process pauses the other until the block ends: its wait, plus however long
    # this thread took between the two calls on a busy machine, reaches the block's end.
    before = time.monotonic()
    limiters[0].block("discord:global", 5.0)
    wait = limiters[1].reserve("discord:global", rate, 1.0)
    assert wait >= 5.0 - (time.monotonic() - before) - 0.05
    client_a.delete(*client_a.keys(f"{prefix}:*"))
