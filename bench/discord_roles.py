"""Throughput of DiscordConnector role changes against the fake Discord on loopback.

Serves ``tests/fakes/discord_app.py`` with a global limit of ``--global-rate`` req/s
and per-bucket fixed windows (``--route-limit`` per ``--route-window`` s; all role
changes of the guild share one bucket), runs ``--changes`` role add/remove steps
through one connector from ``--threads`` threads, and prints how close that comes to
the theoretical minimum and how many 429s the fake served.

    .venv/bin/python bench/discord_roles.py --changes 1000
    .venv/bin/python bench/discord_roles.py --changes 1000 --route-limit 40 --route-window 1

Target: elapsed <= 1.1x the minimum, and no 429 beyond the first of a bucket window.
"""

from __future__ import annotations

import argparse
import logging
import queue
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connectors.base import Step, StepContext, StudentRef  # noqa: E402
from connectors.discord import DiscordConnector  # noqa: E402
from tests.fakes.discord_app import COURSE_ROLE_ID, create_app  # noqa: E402
from tests.fakes.server import serve  # noqa: E402

MEMBERS = 200


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=10_000)
    parser.add_argument("--global-rate", type=float, default=50.0, help="req/s, fake and client")
    # 60 per 1 s: the route bucket allows more than the global limit, so 50/s binds.
    parser.add_argument("--route-limit", type=int, default=60)
    parser.add_argument("--route-window", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)

    route_rate = args.route_limit / args.route_window
    effective = min(args.global_rate, route_rate)
    binding = "global" if args.global_rate <= route_rate else "route bucket"
    minimum = args.changes / effective

    app = create_app(
        route_limit=args.route_limit,
        route_window=args.route_window,
        global_limit=int(args.global_rate),
    )
    fake = app.state.fake
    users = [str(80351110224600000 + i) for i in range(MEMBERS)]
    for user in users:
        fake.add_member(user)

    work: queue.SimpleQueue[int] = queue.SimpleQueue()
    for i in range(args.changes):
        work.put(i)
    failures: list[str] = []

    with serve(app) as base:
        connector = DiscordConnector(
            fake.token, fake.guild_id, api_base=f"{base}/api/v10", global_rate=args.global_rate
        )

        def worker() -> None:
            while True:
                try:
                    i = work.get_nowait()
                except queue.Empty:
                    return
                # Each member gets the role, then loses it on the next pass.
                action = "add_role" if (i // MEMBERS) % 2 == 0 else "remove_role"
                student = StudentRef(id=i, email=f"s{i}@example.org", discord_id=users[i % MEMBERS])
                ctx = StepContext(student, event_id=i, event_type="BENCH", product_key="bench")
                result = connector.run(Step(action, {"role_ids": [COURSE_ROLE_ID]}), ctx)
                if result.status.value != "done":
                    failures.append(f"{action} {i}: {result.error} {result.detail}")

        threads = [threading.Thread(target=worker) for _ in range(args.threads)]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
        connector.close()

    expected_with_role = sum(1 for user_index in range(MEMBERS) if _last_action_adds(user_index, args.changes))
    with_role = sum(1 for roles in fake.members.values() if COURSE_ROLE_ID in roles)
    route_429 = fake.rate_limited - fake.rate_limited_global
    print(f"changes            {args.changes} ({args.threads} threads), failures {len(failures)}")
    print(
        f"limits             global {args.global_rate:g}/s, route {args.route_limit}/"
        f"{args.route_window:g}s = {route_rate:g}/s -> binding: {binding} ({effective:g}/s)"
    )
    print(f"elapsed            {elapsed:.2f} s")
    print(f"theoretical min    {minimum:.2f} s (changes / {effective:g} per s)")
    print(f"ratio              {elapsed / minimum:.3f}")
    print(
        f"429s served        {fake.rate_limited} (route {route_429}, "
        f"global {fake.rate_limited_global}); max in one bucket window "
        f"{fake.max_429_per_window()}"
    )
    print(f"429s per bucket    {fake.rate_limited_by_bucket or '{}'}")
    print(f"state check        {with_role} members hold the role, expected {expected_with_role}")
    for line in failures[:5]:
        print("  failure:", line)
    ok = not failures and with_role == expected_with_role and fake.max_429_per_window() <= 1
    return 0 if ok else 1


def _last_action_adds(user_index: int, changes: int) -> bool:
    last = max((i for i in range(user_index, changes, MEMBERS)), default=None)
    return last is not None and (last // MEMBERS) % 2 == 0


if __name__ == "__main__":
    sys.exit(main())
