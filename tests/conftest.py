"""Shared fixtures: the real PostgreSQL and Redis, and runtimes wired to test connectors.

In CI (CI=true) a missing service is a failure, never a skip.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import hypothesis
import pytest

from engine.pipeline.queue import MemoryQueue  # reads no settings

os.environ.setdefault("ENGINE_ENV", "test")
# One queue name per test process: the Redis keys it creates are the only ones it deletes. Under
# pytest-xdist every worker inherits the controller's environment, so each one picks its own.
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ["QUEUE_NAME"] = f"engine-test-{uuid.uuid4().hex[:8]}"
else:
    os.environ.setdefault("QUEUE_NAME", f"engine-test-{uuid.uuid4().hex[:8]}")

REPO = Path(__file__).resolve().parents[1]
# Everything the tests read lives in the repository (a clone must pass on its own).
REFERENCE = REPO / "examples" / "hotmart"
CORPUS = REPO / "tests" / "data" / "hotmart-corpus"
RULES = REPO / "rules"

# Service URLs come from the environment; the defaults are the CI machine's.
TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
_pg, _redis = urlsplit(TEST_DATABASE_URL), urlsplit(TEST_REDIS_URL)
PG_HOST, PG_PORT = _pg.hostname or "127.0.0.1", _pg.port or 5432
REDIS_HOST, REDIS_PORT = _redis.hostname or "127.0.0.1", _redis.port or 6379
ADMIN_TOKEN = "admin-test-token"
HOTTOK = "hottok-test-secret"

# The property and fuzz tests try `examples(n)` cases each: n on every change, five times as many
# under `pytest --hypothesis-profile=thorough` (hypothesis loads a profile after this file has
# registered it).
hypothesis.settings.register_profile("thorough", max_examples=500)


def examples(default: int) -> int:
    """``default`` scaled by the loaded profile's ``max_examples`` (100 in hypothesis' default)."""
    scale = hypothesis.settings().max_examples / hypothesis.settings.get_profile("default").max_examples
    return max(1, round(default * scale))


DISCORD_ACTIONS = frozenset({"add_role", "remove_role", "send_dm"})
MANYCHAT_ACTIONS = frozenset({"add_tag", "remove_tag", "set_field", "trigger_flow"})


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    if _reachable(host, port):
        return
    message = f"{name} is not reachable on {host}:{port} (.ci/run starts it)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 20.0, what: str = "condition") -> T:
    """Return what ``predicate()`` returns once it is true; fail with "timed out waiting for WHAT"
    after ``timeout`` seconds. Polls quickly at first, then every quarter second (the long waits
    need no faster)."""
    deadline, pause = time.monotonic() + timeout, 0.05
    while time.monotonic() < deadline:
        if found := predicate():
            return found
        time.sleep(pause)
        pause = min(pause * 1.5, 0.25)
    if found := predicate():  # a last look: the machine may have been busy through the final pause
        return found
    raise AssertionError(f"timed out waiting for {what}")


def load_payload(name: str) -> dict:
    return json.loads((REFERENCE / name).read_text())


@contextmanager
def throwaway_database(prefix: str) -> Iterator[str]:
    """The URL of a new, empty database (no tables) on the test server, named ``prefix_<random>``;
    dropped when the block ends, even with connections still open."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(TEST_DATABASE_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
        # A throwaway database need not wait for the disk at every commit (this database only).
        conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    try:
        yield urlunsplit(_pg._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(TEST_DATABASE_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database for this test session, migrated to head."""
    require_service("PostgreSQL", PG_HOST, PG_PORT)
    from engine.db.migrate import upgrade
    from engine.db.session import dispose_all
    from engine.settings import Settings

    with throwaway_database("engine_test") as url:
        upgrade(Settings(ENGINE_ENV="test", database_url=url))
        yield url
        dispose_all()


@pytest.fixture
def pg(postgres_url: str) -> str:
    """The session database, emptied before the test."""
    from engine.db.session import session_factory
    from engine.settings import Settings

    # DELETE, children first, then the sequences back to 1: the same clean slate as TRUNCATE ...
    # RESTART IDENTITY, at a tenth of its cost on tables this small (TRUNCATE makes new files).
    # One round trip: the statements go as one string (no parameters, so PostgreSQL takes them all).
    sessions = session_factory(Settings(ENGINE_ENV="test", database_url=postgres_url))
    with sessions.begin() as session, rewriting_event_log(session):
        session.connection().exec_driver_sql(_empty_tables_sql())
    return postgres_url


@functools.cache
def _empty_tables_sql() -> str:
    from engine.db.models import Base

    deletes = "".join(f'DELETE FROM "{table.name}";' for table in reversed(Base.metadata.sorted_tables))
    return deletes + (
        "SELECT setval(c.oid, 1, false) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind = 'S' AND n.nspname = 'public';"
    )


@contextmanager
def rewriting_event_log(session) -> Iterator[None]:
    """Tests only: lift the event log's insert-only trigger (migration 0008) inside ``session``'s
    transaction, e.g. to backdate ``received_at``. The trigger is back when the block ends."""
    from sqlalchemy import text

    session.execute(text("ALTER TABLE events DISABLE TRIGGER events_insert_only"))
    yield
    session.execute(text("ALTER TABLE events ENABLE TRIGGER events_insert_only"))


def _delete_this_runs_keys(client) -> None:
    """Only the keys of this process's queue name (and of the names tests derive from it, such as
    ``NAME-reconcile-cli``), never the whole database."""
    from engine.worker import queue_key_patterns

    for pattern in queue_key_patterns(os.environ["QUEUE_NAME"]):
        keys = list(client.scan_iter(match=pattern))
        if keys:
            client.delete(*keys)


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The test Redis, without this process's keys before and after the test."""
    require_service("Redis", REDIS_HOST, REDIS_PORT)
    import redis

    client = redis.Redis.from_url(TEST_REDIS_URL)
    _delete_this_runs_keys(client)
    yield TEST_REDIS_URL
    _delete_this_runs_keys(client)
    client.close()


@dataclass
class Clock:
    """A controllable clock for timers and retries."""

    now: datetime = field(default_factory=lambda: datetime(2026, 3, 2, 12, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta) -> None:
        from datetime import timedelta

        self.now += timedelta(**delta)


@dataclass
class Harness:
    """A runtime with recording connectors, a manual queue and a controllable clock."""

    runtime: object
    discord: object
    manychat: object
    clock: Clock
    queue: MemoryQueue = field(default_factory=MemoryQueue)  # the runtime's

    @property
    def queued(self) -> list[int]:
        """Events to process, in order (``run_queue`` runs them)."""
        return self.queue.events

    @property
    def drains(self) -> list[tuple[int, float]]:
        return self.queue.drains

    @property
    def deferred(self) -> list[tuple[int, float]]:  # events still settling
        return self.queue.deferred

    def deliver(self, payload: dict) -> int:
        """Store a Hotmart payload as a verified webhook and process the queue; the event id."""
        import json

        from engine.pipeline.intake import store_webhook
        from engine.sources.hotmart import SOURCE as HOTMART

        with self.runtime.sessions.begin() as session:
            stored = store_webhook(HOTMART, session, json.dumps(payload).encode(), {}, held=False)
        assert stored.event_id is not None
        self.queued.append(stored.event_id)
        self.run_queue()
        return stored.event_id

    def run_queue(self) -> list[str]:
        from engine.pipeline.processing import process_event

        results = []
        while self.queued:
            results.append(process_event(self.runtime, self.queued.pop(0)))
        return results


_LOADED_RULES: dict[Path, object] = {}


def _rules_repository(rules_dir: Path):
    """A RulesRepository for ``rules_dir``. The shipped rules are read and validated once per test
    process, and each harness gets a copy; any other folder (a test's own) is loaded each time."""
    from engine.pipeline.rules_repository import RulesRepository

    if Path(rules_dir) != RULES:
        return RulesRepository(rules_dir)
    return copy.copy(_shipped_repository())


def _shipped_repository():
    from engine.pipeline.rules_repository import RulesRepository

    template = _LOADED_RULES.get(RULES)
    if template is None:
        template = _LOADED_RULES[RULES] = RulesRepository(RULES)
    template.reload_if_changed()
    return template


def shipped_rules():
    """The shipped rules (``rules/``), read and validated once per test process and shared: read
    them, never change them (a test that needs other rules writes its own folder)."""
    return _shipped_repository().rules


_CHECKED_RULES: dict[tuple, tuple] = {}


@pytest.fixture
def rules_checked_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """`engine` commands run in this test validate a rules folder once per test process while its
    files are unchanged (same paths, sizes and times): the corpus tests run the CLI 180 times on
    two folders, and reading and validating the rules is most of each run."""
    import engine.rules
    from engine.rules.files import fingerprint

    check = engine.rules.check_rules

    def check_rules(rules_dir):
        try:
            stamp = fingerprint(Path(rules_dir))
        except OSError:
            return check(rules_dir)
        key = (Path(rules_dir).resolve(), stamp)
        if key not in _CHECKED_RULES:
            _CHECKED_RULES[key] = check(rules_dir)
        rules, problems = _CHECKED_RULES[key]
        return rules, list(problems)

    monkeypatch.setattr(engine.rules, "check_rules", check_rules)


@pytest.fixture
def make_harness(pg: str) -> Callable[..., Harness]:
    from connectors.base import RecordingConnector
    from engine.db.session import session_factory
    from engine.pipeline.runtime import Runtime, build_connectors
    from engine.settings import Settings

    def factory(*, rules_dir: Path = RULES, connectors: dict | None = None, **overrides) -> Harness:
        settings = Settings(
            ENGINE_ENV="test",
            database_url=pg,
            rules_dir=rules_dir,
            admin_api_token=ADMIN_TOKEN,
            hotmart_hottok=HOTTOK,
            retry_delay_seconds=30,
            **{"order_settle_seconds": 0, **overrides},  # the harness delivers one event at a time
        )
        sessions = session_factory(settings)
        rules = _rules_repository(rules_dir)
        registry, _ = build_connectors(settings)
        discord = RecordingConnector("discord", DISCORD_ACTIONS)
        manychat = RecordingConnector("manychat", MANYCHAT_ACTIONS)
        for action in DISCORD_ACTIONS:
            registry[action] = discord
        for action in MANYCHAT_ACTIONS:
            registry[action] = manychat
        registry.update(connectors or {})
        clock = Clock()
        harness = Harness(runtime=None, discord=discord, manychat=manychat, clock=clock)
        harness.runtime = Runtime(
            settings=settings,
            sessions=sessions,
            rules=rules,
            connectors=registry,
            clock=clock,
            queue=harness.queue,
        )
        return harness

    return factory


@pytest.fixture
def engine_cli() -> Callable[..., object]:
    """`engine ARGS` on a given database, run in this process as a new process would see it
    (``tests/cli.py``): what ``subprocess.run`` would return."""
    from tests.cli import run_engine

    def run(database_url: str, *args: str):
        return run_engine({**os.environ, "DATABASE_URL": database_url}, *args)

    return run


SERVICE_FIXTURES = frozenset({"postgres_url", "redis_url"})
# Tests that run servers: the engine's own processes (e2e) and the fake Discord/ManyChat servers,
# whose rate-limit tests wait in real time.
SERVER_DIRS = (REPO / "tests" / "e2e", REPO / "tests" / "fakes")
# Tests that start `engine serve` / `engine worker` processes: several seconds each.
SLOW_FIXTURES = frozenset({"start_stack"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark `integration` every test that uses PostgreSQL or Redis (directly or through another
    fixture) or runs servers; `pytest -m "not integration"` then runs the unit tests alone.

    Then order the run longest first: `slow` tests (marked, or starting the engine's processes),
    then the other integration tests, then the unit tests. `make test` hands tests to its xdist
    workers one at a time in this order, so the minute-long waits overlap instead of queueing."""
    for item in items:
        uses_services = SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ()))
        runs_servers = any(item.path.is_relative_to(folder) for folder in SERVER_DIRS)
        if uses_services or runs_servers:
            item.add_marker(pytest.mark.integration)
        if SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)

    def rank(item: pytest.Item) -> int:
        if item.get_closest_marker("slow"):
            return 0
        return 1 if item.get_closest_marker("integration") else 2

    items.sort(key=rank)  # stable: files keep their order within a rank
