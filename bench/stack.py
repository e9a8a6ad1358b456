"""What bench/launch.py and bench/scaleout.py share: a throwaway database, the engine's
environment against the fake servers, worker processes and their CPU / memory / transactions.

Needs PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379 (`bash .ci/services`).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ENGINE = str(Path(sys.executable).with_name("engine"))
ADMIN_DSN = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
HOTTOK = "bench-hottok"
CLK_TCK = os.sysconf("SC_CLK_TCK")


@contextmanager
def bench_database(*, keep: bool = False) -> Iterator[str]:
    """A fresh, migrated database, dropped afterwards (``keep``: left for inspection)."""
    from engine.db.migrate import upgrade
    from engine.settings import Settings

    name = f"engine_bench_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"
    try:
        upgrade(Settings(ENGINE_ENV="test", database_url=dsn))
        yield dsn
    finally:
        from engine.db.session import dispose_all

        dispose_all()
        if keep:
            print(f"kept database {name}")
        else:
            with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def engine_env(dsn: str, discord_url: str, manychat_url: str, queue: str, **extra: str) -> dict[str, str]:
    from tests.fakes import discord_app

    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "MANYCHAT_", "HOTMART_"))}
    env.update(
        {
            "ENGINE_ENV": "production",
            "DATABASE_URL": dsn,
            "REDIS_URL": REDIS_URL,
            "QUEUE_NAME": queue,
            "RULES_DIR": str(REPO / "rules"),
            "HOTMART_HOTTOK": HOTTOK,
            "ADMIN_API_TOKEN": "bench-admin",
            "VAR_DIR": tempfile.mkdtemp(prefix="engine-bench-"),
            "DISCORD_ENABLED": "true",
            "DISCORD_BOT_TOKEN": "bench",
            "DISCORD_GUILD_ID": discord_app.GUILD_ID,
            "DISCORD_API_BASE": f"{discord_url}/api/v10",
            "MANYCHAT_ENABLED": "true",
            "MANYCHAT_API_TOKEN": "bench",
            "MANYCHAT_API_BASE": manychat_url,
        }
    )
    env.update(extra)
    return env


def clear_queue(queue: str) -> None:
    """Delete this queue's keys (Huey's and the engine's), nothing else in the Redis database."""
    import redis

    from engine.worker import queue_key_patterns

    client = redis.Redis.from_url(REDIS_URL)
    for pattern in queue_key_patterns(queue):
        keys = list(client.scan_iter(match=pattern))
        if keys:
            client.delete(*keys)


def remote_enqueue(queue: str, priority: int = 0):
    """Enqueue process_event_task from this process, as the API and the bot do."""
    from huey import PriorityRedisHuey

    huey = PriorityRedisHuey(queue, url=REDIS_URL)

    def process_event_task(event_id: int) -> None:  # runs in the worker
        raise AssertionError("runs in the worker")

    process_event_task.__module__ = "engine.worker"
    task = huey.task()(process_event_task)
    return lambda event_id: task(event_id, priority=priority) and None


@dataclass
class Workers:
    """Worker processes: started, measured (CPU, RSS), stopped."""

    env: dict[str, str]
    args: list[str]
    processes: list[subprocess.Popen] = field(default_factory=list)
    rss_start_mb: list[float] = field(default_factory=list)

    def start(self, count: int) -> None:
        for _ in range(count):
            self.processes.append(
                subprocess.Popen(
                    [ENGINE, "worker", *self.args],
                    env=self.env,
                    cwd=REPO,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        time.sleep(4.0)  # imports, rules, the startup sweep
        self.rss_start_mb = [rss_mb(p.pid) for p in self.processes]
        self._cpu_start = [cpu_seconds(p.pid) for p in self.processes]

    def cpu_used(self) -> float:
        return sum(cpu_seconds(p.pid) - start for p, start in zip(self.processes, self._cpu_start, strict=True))

    def rss_now_mb(self) -> list[float]:
        return [rss_mb(p.pid) for p in self.processes]

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def rss_mb(pid: int, *, children: bool = False) -> float:
    """Resident memory of the process (``children``: plus its children, e.g. forked uvicorn workers)."""
    pids = [pid]
    if children:
        with contextlib.suppress(OSError):
            pids += [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    total = 0
    for each in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


def wait_healthy(url: str, timeout: float = 30.0) -> None:
    """Until the API at ``url`` answers /healthz with 200; exits the bench if it never does."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/healthz").status_code == 200:
                return
        time.sleep(0.1)
    raise SystemExit("the API did not start")


def transactions(dsn: str) -> int:
    """Committed + rolled back transactions of the bench database so far."""
    name = dsn.rsplit("/", 1)[1]
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s", (name,)
        ).fetchone()
    return int(row[0])


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def start_api(env: dict[str, str], *, workers: int = 1) -> tuple[subprocess.Popen, str]:
    """`engine serve --no-worker` on a free loopback port (``workers``: uvicorn processes), healthy;
    returns the process and its base URL. Stop it with :func:`stop_process`."""
    from tests.fakes.server import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    api = subprocess.Popen(
        [ENGINE, "serve", "--no-worker", "--port", str(port), "--workers", str(workers)],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_healthy(url)
    except BaseException:
        stop_process(api)
        raise
    return api, url


def stop_process(process: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL if it has not ended within ``timeout`` seconds."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class QueueDepth:
    """Tasks waiting in a Huey queue and its lanes (``<queue>.manychat``) in Redis, and those
    scheduled for later (retries, delayed tasks). One Redis connection pool, reused per call."""

    def __init__(self, queue: str):
        from huey import PriorityRedisHuey
        from redis import ConnectionPool

        from engine.worker import LANES

        pool = ConnectionPool.from_url(REDIS_URL)
        self._hueys = [
            PriorityRedisHuey(name, connection_pool=pool) for name in (queue, *(f"{queue}.{lane}" for lane in LANES))
        ]

    def __call__(self) -> tuple[int, int]:
        """(waiting, scheduled), summed over the queue and its lanes."""
        return (
            sum(huey.pending_count() for huey in self._hueys),
            sum(huey.scheduled_count() for huey in self._hueys),
        )


def database_active_ms(dsn: str) -> float:
    """Milliseconds the bench database's backends have spent executing statements so far
    (``pg_stat_database.active_time``, PostgreSQL 14+; reported by each backend within about a second)."""
    name = dsn.rsplit("/", 1)[1]
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute("SELECT active_time FROM pg_stat_database WHERE datname = %s", (name,)).fetchone()
    return float(row[0] or 0.0)


def backend_cpu_seconds(dsn: str) -> dict[int, float]:
    """CPU seconds used so far by each PostgreSQL backend connected to the bench database, by pid
    (read from /proc: PostgreSQL on this machine; backends not readable there are left out)."""
    name = dsn.rsplit("/", 1)[1]
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        pids = [row[0] for row in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (name,))]
    cpu: dict[int, float] = {}
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            cpu[pid] = cpu_seconds(pid)
    return cpu
