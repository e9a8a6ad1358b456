"""The token bucket the HTTP connectors pace themselves with."""

from __future__ import annotations

from connectors.throttle import TokenBucket


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
    time = FakeTime()
    bucket = TokenBucket(10, burst=3, clock=time.clock, sleep=time.sleep)
    waits = [bucket.acquire() for _ in range(8)]
    assert waits[:3] == [0, 0, 0]
    assert all(abs(w - 0.1) < 1e-9 for w in waits[3:])
    assert abs(time.now - 1000.5) < 1e-9  # 5 paced acquisitions at 10/s


def test_float_rounding_never_loops_forever():
    # Rates whose reciprocal is not exact in binary used to leave 0.999... tokens forever.
    for rate in (3.0, 7.0, 50.0, 0.3):
        time = FakeTime(start=1e9)
        bucket = TokenBucket(rate, burst=1.0, clock=time.clock, sleep=time.sleep)
        for _ in range(200):
            bucket.acquire()
        assert len(time.sleeps) <= 199
        assert abs((time.now - 1e9) - 199 / rate) < 1e-3
