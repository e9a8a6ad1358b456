"""The deployed shape, on loopback: `engine serve` + `engine worker` processes on the real
PostgreSQL and Redis, talking to the fake Discord and ManyChat servers."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN, HOTTOK, REPO, RULES, shipped_rules, wait_until
from tests.e2e.processes import EngineProcess, start_engine
from tests.fakes import discord_app, manychat_app
from tests.fakes.server import free_port, serve

ENGINE = str(Path(sys.executable).with_name("engine"))
FAKE_TOKEN = "test-token"
GUILD_ID = discord_app.GUILD_ID
ALERT_CHANNEL = discord_app.ALERT_CHANNEL_ID
COMMUNITY_ROLE = "1180000000000000002"
ANA = {"email": "ana.exemplo@example.com", "discord_id": "80351110224678912"}


@dataclass
class Fakes:
    discord: discord_app.FakeDiscord
    manychat: manychat_app.FakeManyChat
    discord_url: str
    manychat_url: str


def _seed_manychat(fake: manychat_app.FakeManyChat) -> None:
    rules = shipped_rules()
    fake.seed_tags(*sorted(rules.manychat_tags))
    fake.seed_fields(*sorted(rules.manychat_fields))
    fake.seed_flows({ns: name for product in rules.products.values() for name, ns in product.flows.items()})
    fake.seed_subscriber(email=ANA["email"], whatsapp_phone="+5511999990001", first_name="Ana")


@contextmanager
def running_fakes() -> Iterator[Fakes]:
    """The fake Discord (a guild with Ana and the community role) and the fake ManyChat (the shipped
    rules' tags, fields and flows, and Ana's contact), each served on loopback while the block runs."""
    discord = discord_app.create_app(token=FAKE_TOKEN, route_limit=50, route_window=1.0)
    manychat = manychat_app.create_app(token=FAKE_TOKEN)
    discord.state.fake.add_role(COMMUNITY_ROLE, "Comunidade", position=2)
    discord.state.fake.add_member(ANA["discord_id"])
    _seed_manychat(manychat.state.fake)
    with serve(discord) as discord_url, serve(manychat) as manychat_url:
        yield Fakes(discord.state.fake, manychat.state.fake, f"{discord_url}/api/v10", manychat_url)


@pytest.fixture
def fakes() -> Iterator[Fakes]:
    with running_fakes() as running:
        yield running


@dataclass
class Stack:
    api: str
    env: dict[str, str]
    client: httpx.Client
    processes: dict[str, EngineProcess] = field(default_factory=dict)  # "api" and, with one, "worker"

    def post_webhook(self, body: bytes) -> httpx.Response:
        return self.client.post("/webhooks/hotmart", content=body, headers={"X-HOTMART-HOTTOK": HOTTOK})

    def admin(self, path: str, method: str = "GET", **kwargs) -> httpx.Response:
        return self.client.request(method, path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, **kwargs)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
        # wait_until polls quickly at first, then every quarter second: each poll is a request the
        # API and this process must serve, and the long waits (retries, rate limits) need no faster.
        wait_until(predicate, timeout=timeout, what=what)

    def event(self, event_id: int) -> dict:
        return self.admin(f"/admin/events/{event_id}").json()

    def wait_event(self, event_id: int, statuses=("processed", "ignored", "failed")) -> dict:
        self.wait_for(lambda: self.event(event_id).get("status") in statuses, what=f"event {event_id}")
        return self.event(event_id)


def stack_env(pg: str, redis_url: str, fakes: Fakes, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "MANYCHAT_", "HOTMART_"))}
    env.update(
        {
            "ENGINE_ENV": "production",
            "DATABASE_URL": pg,
            "REDIS_URL": redis_url,
            "RULES_DIR": str(RULES),
            "HOTMART_HOTTOK": HOTTOK,
            "ADMIN_API_TOKEN": ADMIN_TOKEN,
            "HOTMART_ENABLED": "true",
            "DISCORD_ENABLED": "true",
            "DISCORD_BOT_TOKEN": FAKE_TOKEN,
            "DISCORD_GUILD_ID": GUILD_ID,
            "DISCORD_ALERT_CHANNEL_ID": ALERT_CHANNEL,
            "DISCORD_API_BASE": fakes.discord_url,
            "MANYCHAT_ENABLED": "true",
            "MANYCHAT_API_TOKEN": FAKE_TOKEN,
            "MANYCHAT_API_BASE": fakes.manychat_url,
            "RETRY_DELAY_SECONDS": "0.5",
        }
    )
    env.update(extra)
    return env


def launch_stack(env: dict[str, str], logs: Path, *, worker: bool = True) -> Stack:
    """`engine serve --no-worker` (and, with ``worker``, `engine worker`) with ``env`` on a free
    port, their logs in a new folder of ``logs``; returns once /healthz answers (``stop_stacks``
    stops them)."""
    port = free_port()
    folder = logs / f"stack-{port}"
    folder.mkdir()
    commands = [("api", ["serve", "--no-worker", "--port", str(port)])]
    if worker:
        commands.append(("worker", ["worker", "--threads", "2"]))
    started = {name: start_engine(args, env=env, cwd=REPO, log=folder / f"{name}.log") for name, args in commands}
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
    stack = Stack(f"http://127.0.0.1:{port}", env, client, started)

    def healthy() -> bool:
        try:
            return client.get("/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    try:
        stack.wait_for(healthy, timeout=30, what="the API to start")
    except BaseException:
        stop_stacks([stack])
        raise
    return stack


def stop_stacks(stacks: Iterable[Stack]) -> None:
    """Close the stacks' clients and stop their processes: SIGTERM to every one first, then wait
    for each (SIGKILL after ten seconds)."""
    stacks = list(stacks)
    for stack in stacks:
        stack.client.close()
    processes = [process for stack in stacks for process in stack.processes.values()]
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture
def start_stack(pg: str, redis_url: str, fakes: Fakes, tmp_path: Path):
    stacks: list[Stack] = []

    def start(*, worker: bool = True, **extra: str) -> Stack:
        stack = launch_stack(stack_env(pg, redis_url, fakes, **extra), tmp_path, worker=worker)
        stacks.append(stack)
        return stack

    yield start
    stop_stacks(stacks)


def remote_enqueue(redis_url: str) -> Callable[[int], None]:
    """Enqueue process_event_task into the stack's Redis from this test process (as the bot does)."""
    from huey import PriorityRedisHuey

    client = PriorityRedisHuey(os.environ["QUEUE_NAME"], url=redis_url)

    def process_event_task(event_id: int) -> None:  # executed by the worker, never here
        raise AssertionError("runs in the worker")

    process_event_task.__module__ = "engine.worker"
    task = client.task()(process_event_task)
    return lambda event_id: task(event_id) and None
