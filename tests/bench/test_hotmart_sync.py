"""bench/hotmart_sync.py at a small size, so that it cannot rot: it finds exactly the changes the
engine was not told of, within the rate limit."""

from __future__ import annotations

import pytest

from tests.conftest import throwaway_database

pytestmark = pytest.mark.integration


def test_a_small_account_is_compared_and_every_missed_change_found():
    from bench import hotmart_sync

    with throwaway_database("engine_test_bench_sync") as url:
        result = hotmart_sync.run(url, subscriptions=60, sales=150, missed=10, seed_number=7)
    assert (result.subscriptions, result.sales) == (60, 150)
    assert result.expected > 0 and result.found == result.expected
    assert result.requests > 0 and result.rate_limited == 0 and result.limit_seconds == 0
    assert result.engine_cpu_seconds > 0 and result.total_seconds == result.wall_seconds
