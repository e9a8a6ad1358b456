"""Webhook intake and end-to-end latency, on loopback, against the API as deployed.

Starts `engine serve --no-worker` (uvicorn) on PostgreSQL + Redis, then:
1. fixed rates (default 50, 200, 500 req/s): p50/p95/p99 acknowledgement latency;
2. a closed loop: the maximum sustained accepted events/s;
3. with `engine worker` running against the local fake Discord and ManyChat, 20 events/s:
   the time from POST to all of the event's steps done (p50/p99), with the settle window off
   unless --settle-seconds is given (the window adds its length to every webhook's latency).

Usage: .venv/bin/python bench/webhook_load.py [--rates 50,200,500] [--seconds 5]
Needs PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379 (`bash .ci/services`).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.stack import (  # noqa: E402
    ENGINE,
    HOTTOK,
    bench_database,
    clear_queue,
    engine_env,
    remote_enqueue,
    wait_healthy,
)
from tests.e2e.conftest import ANA, _seed_manychat  # noqa: E402
from tests.fakes import discord_app, manychat_app  # noqa: E402
from tests.fakes.server import free_port, serve  # noqa: E402

PAYLOAD = json.loads((REPO / "examples/hotmart/purchase_approved.json").read_text())


def email(i: int) -> str:
    return f"bench{i}@example.com"


def body(i: int) -> bytes:
    """A first purchase by student i (one ManyChat contact each, seeded for the end-to-end part)."""
    payload = copy.deepcopy(PAYLOAD)
    payload["id"] = str(uuid.uuid4())
    payload["data"]["buyer"]["email"] = email(i)
    payload["data"]["buyer"]["checkout_phone"] = f"9{i:08d}"
    return json.dumps(payload).encode()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


async def fixed_rate(url: str, rate: float, seconds: float, offset: int = 0) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=10) as client:
        payloads = [body(offset + i) for i in range(int(rate * seconds))]

        async def one(data: bytes) -> None:
            nonlocal errors
            start = time.perf_counter()
            response = await client.post("/webhooks/hotmart", content=data, headers={"X-HOTMART-HOTTOK": HOTTOK})
            latencies.append((time.perf_counter() - start) * 1000)
            if response.status_code != 200:
                errors += 1

        tasks = []
        start = time.perf_counter()
        for i, data in enumerate(payloads):  # open loop: send on schedule whatever the answers
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(data)))
        await asyncio.gather(*tasks)
    return latencies, errors


def _fixed_rate_process(args: tuple[str, float, float, int]) -> tuple[list[float], int]:
    url, rate, seconds, offset = args
    return asyncio.run(fixed_rate(url, rate, seconds, offset))


def fixed_rate_parallel(url: str, rate: int, seconds: float, processes: int) -> tuple[list[float], int]:
    """The open-loop load split over processes, so one client's GIL does not cap the rate."""
    import multiprocessing

    share = rate / processes
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        parts = pool.map(_fixed_rate_process, [(url, share, seconds, n * 10**6) for n in range(processes)])
    return [lat for part, _ in parts for lat in part], sum(errors for _, errors in parts)


async def closed_loop(url: str, concurrency: int, seconds: float) -> float:
    done = 0
    deadline = time.perf_counter() + seconds
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:

        async def worker(n: int) -> None:
            nonlocal done
            i = 0
            while time.perf_counter() < deadline:
                response = await client.post(
                    "/webhooks/hotmart", content=body(n * 10**6 + i), headers={"X-HOTMART-HOTTOK": HOTTOK}
                )
                i += 1
                if response.status_code == 200:
                    done += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in range(concurrency)))
        return done / (time.perf_counter() - start)


WRK_SCRIPT = """
local f = io.open("%s", "r")
local template = f:read("*all")
f:close()
local counter = 0
local prefix = tostring(math.random(1, 1000000000))
request = function()
  counter = counter + 1
  local body = template:gsub("5b0e8c1e%%-1f0a%%-4c52%%-9d1e%%-0a0000000001", "wrk-" .. prefix .. "-" .. counter)
  body = body:gsub("ana.exemplo@example.com", "wrk" .. prefix .. "-" .. counter .. "@example.com")
  return wrk.format("POST", "/webhooks/hotmart", {["X-HOTMART-HOTTOK"] = "%s"}, body)
end
"""


def max_sustained(url: str, concurrency: int, seconds: float) -> tuple[float, str]:
    """Closed loop: wrk when installed (a C client leaves the CPU to the server), else Python."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return asyncio.run(closed_loop(url, concurrency, seconds)), "closed loop, Python client"
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT % (REPO / "examples/hotmart/purchase_approved.json", HOTTOK))
    out = subprocess.run(
        [wrk, "-t2", f"-c{concurrency}", f"-d{int(seconds)}s", "-s", script.name, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    os.unlink(script.name)
    non_2xx = next((int(line.split()[-1]) for line in out.splitlines() if "Non-2xx" in line), 0)
    rate = next(float(line.split()[-1]) for line in out.splitlines() if line.startswith("Requests/sec"))
    return rate * (1 - non_2xx / max(1, rate * seconds)), "wrk"


def lifecycle_mix(url: str, dsn: str, queue: str, rate: int, seconds: float) -> None:
    """The steady state of a course at ``rate`` events/s: half are first purchases, half are
    students linking Discord with the code a purchase one second earlier sent them."""
    from engine.db.session import session_factory
    from engine.onboarding.linking import LinkService
    from engine.pipeline.rules_repository import RulesRepository
    from engine.settings import Settings

    service = LinkService(
        session_factory(Settings(ENGINE_ENV="test", database_url=dsn)),
        RulesRepository(REPO / "rules"),
        remote_enqueue(queue),
    )
    purchases = int(rate / 2 * seconds)
    lag = int(rate / 2)  # link the student who bought one second ago

    def code_of(i: int) -> str | None:
        with psycopg.connect(dsn) as conn:
            row = conn.execute(
                "SELECT t.code FROM onboarding_tokens t JOIN students s ON s.id = t.student_id "
                "WHERE s.email = %s AND t.revoked_at IS NULL",
                (email(i),),
            ).fetchone()
        return row[0] if row else None

    with httpx.Client(base_url=url, timeout=10) as client:
        start = time.perf_counter()
        for step in range(purchases + lag):
            delay = start + step * 2 / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            if step < purchases:
                client.post("/webhooks/hotmart", content=body(step), headers={"X-HOTMART-HOTTOK": HOTTOK})
            if step >= lag:
                student = step - lag
                code = code_of(student)
                if code:
                    service.link(discord_id(student), code)
            half = start + (step * 2 + 1) / rate - time.perf_counter()
            if half > 0:
                time.sleep(half)


def discord_id(i: int) -> str:
    return str(1_200_000_000_000_000_000 + i)


def end_to_end(env: dict[str, str], url: str, dsn: str, rate: int, seconds: float, mix: bool) -> list[float]:
    worker = subprocess.Popen(
        [ENGINE, "worker", "--threads", "4"], env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        time.sleep(2)
        if mix:
            lifecycle_mix(url, dsn, env["QUEUE_NAME"], rate, seconds)
        else:
            asyncio.run(fixed_rate(url, rate, seconds))
        deadline = time.monotonic() + 60
        with psycopg.connect(dsn) as conn:
            while time.monotonic() < deadline:
                left = conn.execute(
                    "SELECT count(*) FROM events WHERE status NOT IN ('processed','ignored','failed')"
                ).fetchone()[0]
                if left == 0:
                    break
                time.sleep(0.2)
            rows = conn.execute(
                "SELECT extract(epoch FROM max(a.finished_at) - e.received_at) FROM events e "
                "JOIN action_runs a ON a.event_id = e.id GROUP BY e.id"
            ).fetchall()
            statuses = conn.execute("SELECT type, status, count(*) FROM events GROUP BY 1, 2").fetchall()
        print(f"  events: {', '.join(f'{t} {s}: {n}' for t, s, n in statuses)}")
        return [float(r[0]) * 1000 for r in rows]
    finally:
        worker.terminate()
        worker.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="50,200,500")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--e2e-rate", type=int, default=20)
    parser.add_argument("--e2e-seconds", type=float, default=10.0)
    parser.add_argument("--api-workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--client-processes", type=int, default=2, help="load generator processes")
    parser.add_argument(
        "--settle-seconds",
        type=float,
        default=0.0,
        help="ORDER_SETTLE_SECONDS for the end-to-end part (0: the engine's own latency; "
        "with a window, each webhook waits that much more before it is planned)",
    )
    parser.add_argument("--skip-ack", action="store_true", help="only the end-to-end part")
    parser.add_argument("--keep-db", action="store_true", help="keep the bench database for inspection")
    args = parser.parse_args()

    # A queue name of its own: only its keys are deleted from the bench Redis database.
    queue = f"bench-load-{uuid.uuid4().hex[:8]}"
    discord = discord_app.create_app(token="bench", route_limit=50, route_window=1.0)
    manychat = manychat_app.create_app(token="bench")
    discord.state.fake.add_member(ANA["discord_id"])
    _seed_manychat(manychat.state.fake)
    for i in range(int(args.e2e_rate * args.e2e_seconds)):
        manychat.state.fake.seed_subscriber(email=email(i), whatsapp_phone=f"+55119{i:08d}", first_name=f"Bench {i}")
        discord.state.fake.add_member(discord_id(i))
    api = None
    clear_queue(queue)
    try:
        with (
            bench_database(keep=args.keep_db) as dsn,
            serve(discord) as discord_url,
            serve(manychat) as manychat_url,
        ):
            env = engine_env(dsn, discord_url, manychat_url, queue, ORDER_SETTLE_SECONDS=str(args.settle_seconds))
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            api = subprocess.Popen(
                [ENGINE, "serve", "--no-worker", "--port", str(port), "--workers", str(args.api_workers)],
                env=env,
                cwd=REPO,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            wait_healthy(url)
            if args.skip_ack:
                args.rates = ""
            print(f"acknowledgement latency ({args.seconds:.0f} s per rate; uvicorn + PostgreSQL + Redis, 2 cores):")
            for rate in (int(r) for r in args.rates.split(",") if r):
                latencies, errors = fixed_rate_parallel(url, rate, args.seconds, args.client_processes)
                print(
                    f"  {rate:>4}/s: p50 {percentile(latencies, 50):6.1f} ms  p95 {percentile(latencies, 95):6.1f} ms"
                    f"  p99 {percentile(latencies, 99):6.1f} ms  ({len(latencies)} requests, {errors} non-200)"
                )
            if not args.skip_ack:
                sustained, tool = max_sustained(url, args.concurrency, args.seconds)
                print(f"max sustained: {sustained:,.0f} accepted events/s ({tool}, {args.concurrency} connections)")
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(
                    "TRUNCATE events, action_runs, students, memberships, grants, alerts, "
                    "scheduled_events, onboarding_tokens RESTART IDENTITY CASCADE"
                )
            clear_queue(queue)
            for mix, label in ((True, "purchases + links, half each"), (False, "first purchases only")):
                with psycopg.connect(dsn, autocommit=True) as conn:
                    conn.execute(
                        "TRUNCATE events, action_runs, students, memberships, grants, alerts, "
                        "scheduled_events, onboarding_tokens, link_attempts RESTART IDENTITY CASCADE"
                    )
                print(
                    f"stored to all steps done, {args.e2e_rate} events/s for {args.e2e_seconds:.0f} s, {label} "
                    "(engine worker, fake Discord + ManyChat):"
                )
                e2e = end_to_end(env, url, dsn, args.e2e_rate, args.e2e_seconds, mix)
                print(f"  p50 {percentile(e2e, 50):6.0f} ms  p99 {percentile(e2e, 99):6.0f} ms  ({len(e2e)} events)")
    finally:
        if api is not None:
            api.terminate()
            api.wait(10)
        clear_queue(queue)


if __name__ == "__main__":
    main()
