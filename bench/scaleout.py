"""1, 2 and 4 `engine worker` processes draining role changes against the fake Discord.

Each change is a MEMBER_JOINED event of an active, linked student (the rules give the
course role back): one Discord PUT per event. The fake Discord allows 50 requests/s
globally and 50 per second per route bucket; every worker process shares one budget in
Redis. Prints, per configuration: the aggregate PUT rate, the 429s served (global, and the
most in one route-bucket window), PostgreSQL transactions per event, worker CPU seconds per
event and worker memory at start and end.

    .venv/bin/python bench/scaleout.py                  # 2,000 changes per configuration
    .venv/bin/python bench/scaleout.py --changes 1000 --processes 1,2,4

Goals (issue 13): >= 45/s aggregate for every configuration, 0 global 429s, per-route
429s <= 1 per bucket window.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.stack import Workers, bench_database, clear_queue, engine_env, remote_enqueue, transactions  # noqa: E402
from engine.db.models import Membership, Student, utcnow  # noqa: E402
from engine.db.session import session_factory  # noqa: E402
from engine.pipeline.intake import store_internal  # noqa: E402
from engine.settings import Settings  # noqa: E402
from tests.fakes import discord_app, manychat_app  # noqa: E402
from tests.fakes.server import serve  # noqa: E402

COURSE_ROLE = "1180000000000000001"


def discord_id(i: int) -> str:
    return str(1_300_000_000_000_000_000 + i)


def seed(dsn: str, changes: int) -> list[int]:
    """Active, linked students of the course, and one MEMBER_JOINED event each (stored, not queued)."""
    sessions = session_factory(Settings(ENGINE_ENV="test", database_url=dsn))
    ids: list[int] = []
    now = utcnow()
    with sessions.begin() as session:
        for i in range(changes):
            student = Student(email=f"scale{i}@example.com", discord_id=discord_id(i), created_at=now, updated_at=now)
            session.add(student)
            session.flush()
            session.add(Membership(student_id=student.id, product_key="curso", state="active"))
            stored = store_internal(
                session,
                "MEMBER_JOINED",
                email=student.email,
                student_id=student.id,
                source="bot",
                fields={"discord_id": discord_id(i)},
            )
            ids.append(stored.event_id)
    return ids


def run(processes: int, args, dsn: str, discord, discord_url: str, manychat_url: str) -> dict:
    import psycopg

    queue = f"bench-scale-{uuid.uuid4().hex[:6]}"
    clear_queue(queue)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE events, action_runs, students, memberships, grants, alerts, scheduled_events, "
            "onboarding_tokens RESTART IDENTITY CASCADE"
        )
    event_ids = seed(dsn, args.changes)
    discord.reset()
    for i in range(args.changes):
        discord.add_member(discord_id(i))
    env = engine_env(dsn, discord_url, manychat_url, queue)
    workers = Workers(env, ["--threads", str(args.threads), "--lane-threads", "0"])
    workers.start(processes)
    try:
        tx_before = transactions(dsn)
        enqueue = remote_enqueue(queue)
        for event_id in event_ids:
            enqueue(event_id)
        polls = 0
        deadline = time.monotonic() + args.timeout
        with psycopg.connect(dsn, autocommit=True) as conn:
            while time.monotonic() < deadline:
                polls += 1
                left = conn.execute(
                    "SELECT count(*) FROM events WHERE status NOT IN ('processed', 'ignored', 'failed')"
                ).fetchone()[0]
                if left == 0:
                    break
                time.sleep(0.5)
            span, failed = conn.execute(
                "SELECT extract(epoch FROM max(finished_at) - min(finished_at)), "
                "count(*) FILTER (WHERE status <> 'done') FROM action_runs"
            ).fetchone()
        cpu = workers.cpu_used()
        rss_end = workers.rss_now_mb()
        time.sleep(1.0)  # statistics reach pg_stat_database at the end of each transaction, a little late
        tx = transactions(dsn) - tx_before - polls - 2  # minus this script's own polls and reads
    finally:
        workers.stop()
        clear_queue(queue)
    return {
        "processes": processes,
        "left": left,
        "failed": failed,
        "rate": (args.changes - 1) / float(span) if span else float("nan"),
        "global_429": discord.rate_limited_global,
        "route_429": discord.rate_limited - discord.rate_limited_global,
        "route_429_max_window": discord.max_429_per_window(),
        "tx_per_event": tx / args.changes,
        "cpu_per_event_ms": cpu / args.changes * 1000,
        "rss_start": workers.rss_start_mb,
        "rss_end": rss_end,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=2000)
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker process")
    parser.add_argument("--timeout", type=float, default=180.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    discord_app_ = discord_app.create_app(token="bench", route_limit=50, route_window=1.0, global_limit=50)
    discord = discord_app_.state.fake
    manychat = manychat_app.create_app(token="bench")
    ok = True
    with bench_database() as dsn, serve(discord_app_) as discord_url, serve(manychat) as manychat_url:
        print(f"{args.changes} role changes (MEMBER_JOINED -> PUT role), fake Discord 50/s global, 50/1s per route")
        print("procs  rate/s  failed  429 global  429 route (max/window)  tx/event  CPU ms/event  RSS MB start -> end")
        for processes in (int(p) for p in args.processes.split(",")):
            r = run(processes, args, dsn, discord, discord_url, manychat_url)
            rss = ", ".join(f"{a:.0f}->{b:.0f}" for a, b in zip(r["rss_start"], r["rss_end"], strict=True))
            print(
                f"{r['processes']:>5}  {r['rate']:6.1f}  {r['failed']:>6}  {r['global_429']:>10}  "
                f"{r['route_429']:>9} ({r['route_429_max_window']})         {r['tx_per_event']:8.2f}  "
                f"{r['cpu_per_event_ms']:12.1f}  {rss}"
            )
            ok &= r["left"] == 0 and r["failed"] == 0 and r["rate"] >= 45 and r["global_429"] == 0
            ok &= r["route_429_max_window"] <= 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
