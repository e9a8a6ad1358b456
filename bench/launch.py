"""A course launch: a burst of first purchases while earlier buyers link Discord.

`engine serve` + one `engine worker` on PostgreSQL and Redis, against the fake Discord
(50/s) and ManyChat (10/s per endpoint). First ``--linkers`` students buy and get their
code (before the burst). Then ``--purchases`` first purchases arrive at ``--rate`` per
second while one of those students links Discord every second (as /registrar does).

Prints link -> role latency (p50, p99, how many within 2 s), how fast purchases drain
(ManyChat's 10/s per endpoint is the ceiling: each purchase tags, sets the code field and
sends a flow), failed steps, worker CPU seconds per event and memory at start and end.

    .venv/bin/python bench/launch.py                      # 600 purchases at 20/s, 30 links
    .venv/bin/python bench/launch.py --purchases 300 --rate 20

Goals (issue 13): link -> role p99 <= 2 s during the burst; purchases drain >= 9.5/s;
0 failed steps.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import psycopg  # noqa: E402

from bench.stack import (  # noqa: E402
    ENGINE,
    HOTTOK,
    REPO,
    Workers,
    bench_database,
    clear_queue,
    engine_env,
    percentile,
    remote_enqueue,
    wait_healthy,
)
from tests.fakes import discord_app, manychat_app  # noqa: E402
from tests.fakes.server import free_port, serve  # noqa: E402

PAYLOAD = json.loads((REPO / "examples/hotmart/purchase_approved.json").read_text())
COURSE_ROLE = "1180000000000000001"
URGENT = 10  # engine.worker.URGENT: what the bot uses


def email(i: int) -> str:
    return f"launch{i}@example.com"


def discord_id(i: int) -> str:
    return str(1_400_000_000_000_000_000 + i)


def purchase(i: int) -> bytes:
    payload = copy.deepcopy(PAYLOAD)
    payload["id"] = str(uuid.uuid4())
    payload["data"]["buyer"]["email"] = email(i)
    payload["data"]["buyer"]["checkout_phone"] = f"9{i:08d}"
    payload["data"]["purchase"]["transaction"] = f"HP-LAUNCH-{i}"
    return json.dumps(payload).encode()


def wait_processed(dsn: str, emails: list[str], timeout: float) -> int:
    """Wait until the events of these buyers are all final; returns how many are not."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(dsn, autocommit=True) as conn:
        while True:
            left = conn.execute(
                "SELECT count(*) FROM events WHERE email = ANY(%s) AND status NOT IN ('processed','ignored','failed')",
                (emails,),
            ).fetchone()[0]
            if left == 0 or time.monotonic() > deadline:
                return left
            time.sleep(0.25)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--purchases", type=int, default=600)
    parser.add_argument("--rate", type=float, default=20.0, help="purchases per second during the burst")
    parser.add_argument("--linkers", type=int, default=None, help="links, one per second [burst length]")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--lane-threads", type=int, default=8)
    args = parser.parse_args(argv)
    burst_seconds = args.purchases / args.rate
    linkers = args.linkers if args.linkers is not None else int(burst_seconds)
    logging.basicConfig(level=logging.WARNING)

    discord = discord_app.create_app(token="bench", route_limit=50, route_window=1.0, global_limit=50)
    manychat = manychat_app.create_app(token="bench")
    from tests.e2e.conftest import _seed_manychat

    _seed_manychat(manychat.state.fake)
    buyers = list(range(linkers + args.purchases))
    for i in buyers:
        manychat.state.fake.seed_subscriber(email=email(i), whatsapp_phone=f"+55119{i:08d}", first_name=f"Aluno {i}")
    for i in range(linkers):
        discord.state.fake.add_member(discord_id(i))
    queue = f"bench-launch-{uuid.uuid4().hex[:6]}"
    clear_queue(queue)
    api = workers = None
    with bench_database() as dsn, serve(discord) as discord_url, serve(manychat) as manychat_url:
        env = engine_env(dsn, discord_url, manychat_url, queue)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        api = subprocess.Popen(
            [ENGINE, "serve", "--no-worker", "--port", str(port)],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        workers = Workers(env, ["--threads", str(args.threads), "--lane-threads", str(args.lane_threads)])
        workers.start(1)
        client = httpx.Client(base_url=url, timeout=10)
        try:
            wait_healthy(url)
            # Before the launch: the students who will link have bought and got their code.
            for i in range(linkers):
                client.post("/webhooks/hotmart", content=purchase(i), headers={"X-HOTMART-HOTTOK": HOTTOK})
            if wait_processed(dsn, [email(i) for i in range(linkers)], 60):
                print("the linkers' purchases did not finish")
                return 1
            codes = {
                i: next(s for s in manychat.state.fake.subscribers.values() if s.email == email(i)).fields[
                    "codigo_discord"
                ]
                for i in range(linkers)
            }
            events_before = _events(dsn)
            cpu_before = workers.cpu_used()
            latencies = _burst(client, dsn, discord.state.fake, codes, args, queue)
            left = wait_processed(dsn, [email(i) for i in buyers], 300)
            cpu = workers.cpu_used() - cpu_before
            rss_end = workers.rss_now_mb()
            with psycopg.connect(dsn, autocommit=True) as conn:
                first, last, count = conn.execute(
                    "SELECT min(received_at), max(processed_at), count(*) FROM events "
                    "WHERE type = 'PURCHASE_APPROVED' AND email <> ALL(%s)",
                    ([email(i) for i in range(linkers)],),
                ).fetchone()
                failed = conn.execute("SELECT count(*) FROM action_runs WHERE status = 'failed'").fetchone()[0]
            events = _events(dsn) - events_before
        finally:
            client.close()
            if workers:
                workers.stop()
            if api:
                api.terminate()
                api.wait(10)
            clear_queue(queue)
    drain = count / (last - first).total_seconds() if count and last else float("nan")
    within = sum(1 for x in latencies if x <= 2.0)
    print(
        f"burst: {args.purchases} first purchases at {args.rate:g}/s ({burst_seconds:.0f} s), "
        f"{len(latencies)} links (1/s); 1 worker process ({args.threads} threads + {args.lane_threads} ManyChat lane)"
    )
    print(
        f"link -> role    p50 {percentile(latencies, 50):.2f} s  p99 {percentile(latencies, 99):.2f} s  "
        f"max {max(latencies, default=float('nan')):.2f} s  ({within} of {len(latencies)} within 2 s)"
    )
    print(f"purchases       drained at {drain:.2f}/s (first received -> last processed), {left} not finished")
    print(f"failed steps    {failed}; ManyChat 429s {manychat.state.fake.rate_limited}")
    print(
        f"worker          {cpu / max(events, 1) * 1000:.1f} ms CPU per event ({events} events); "
        f"RSS {workers.rss_start_mb[0]:.0f} MB at start, {rss_end[0]:.0f} MB at the end"
    )
    ok = left == 0 and failed == 0 and percentile(latencies, 99) <= 2.0 and drain >= 9.5
    return 0 if ok else 1


def _events(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM events").fetchone()[0]


def _burst(client: httpx.Client, dsn: str, fake_discord, codes: dict[int, str], args, queue: str) -> list[float]:
    """Post the purchases on schedule; link one student per second; returns link -> role seconds."""
    from engine.db.session import session_factory
    from engine.onboarding.linking import LinkService
    from engine.pipeline.rules_repository import RulesRepository
    from engine.settings import Settings

    service = LinkService(
        session_factory(Settings(ENGINE_ENV="test", database_url=dsn)),
        RulesRepository(REPO / "rules"),
        remote_enqueue(queue, priority=URGENT),
    )
    latencies: list[float] = []
    waiting: dict[str, float] = {}
    done = threading.Event()
    lock = threading.Lock()

    def watch_roles() -> None:
        while not done.is_set() or waiting:
            with lock:
                for user, started in list(waiting.items()):
                    if COURSE_ROLE in (fake_discord.member_roles(user) or set()):
                        latencies.append(time.monotonic() - started)
                        del waiting[user]
            time.sleep(0.01)
            if done.is_set() and time.monotonic() > done_at[0] + 60:
                return

    def link_every_second() -> None:
        for n, (i, code) in enumerate(codes.items()):
            delay = start + n + 0.5 - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            with lock:
                waiting[discord_id(i)] = time.monotonic()
            outcome = service.link(discord_id(i), code)
            if outcome.outcome != "linked":
                print(f"link {i}: {outcome.outcome}")

    done_at = [0.0]
    watcher = threading.Thread(target=watch_roles, daemon=True)
    watcher.start()
    start = time.monotonic()
    linker = threading.Thread(target=link_every_second)
    linker.start()
    first = len(codes)
    for n in range(args.purchases):
        delay = start + n / args.rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        client.post("/webhooks/hotmart", content=purchase(first + n), headers={"X-HOTMART-HOTTOK": HOTTOK})
    linker.join()
    done_at[0] = time.monotonic()
    done.set()
    watcher.join()
    return latencies


if __name__ == "__main__":
    sys.exit(main())
