"""The queue: Redis when REDIS_URL is set, SQLite otherwise."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import pytest
from huey import RedisHuey, SqliteHuey

from engine.settings import Settings
from engine.worker import make_huey
from tests.conftest import wait_until


def test_redis_queue_with_bounded_connects(redis_url):
    huey = make_huey(Settings(ENGINE_ENV="test", redis_url=redis_url))
    assert isinstance(huey, RedisHuey)
    pool = huey.storage.conn.connection_pool
    assert pool.connection_kwargs["socket_connect_timeout"] == 2
    assert huey.pending_count() == 0  # really talks to Redis


def test_embedded_queue_is_sqlite_under_var_dir(tmp_path):
    huey = make_huey(Settings(ENGINE_ENV="test", var_dir=tmp_path))
    assert isinstance(huey, SqliteHuey)
    assert huey.pending_count() == 0
    assert (tmp_path / "queue.db").exists()


def test_urgent_events_are_taken_before_bulk_work(redis_url):
    import os

    from engine.worker import URGENT

    huey = make_huey(Settings(ENGINE_ENV="test", redis_url=redis_url, queue_name=f"{os.environ['QUEUE_NAME']}.prio"))

    @huey.task()
    def process(event_id: int) -> None:  # only enqueued here
        raise AssertionError

    for event_id in (1, 2, 3):
        process(event_id)  # purchases
    process(4, priority=URGENT)  # a student linking Discord
    order = [huey.dequeue().args[0] for _ in range(4)]
    assert order == [4, 1, 2, 3]


def test_the_manychat_lane_has_its_own_queue(redis_url):
    from engine.worker import make_huey as lane_huey

    settings = Settings(ENGINE_ENV="test", redis_url=redis_url, queue_name="engine-x")
    assert lane_huey(settings, "manychat").name == "engine-x.manychat" != make_huey(settings).name


def test_queue_key_patterns_find_every_key_of_a_queue_and_its_lanes_and_no_other(redis_url):
    import os

    import redis

    from connectors.throttle import RedisLimiter
    from engine.worker import queue_key_patterns

    name = f"{os.environ['QUEUE_NAME']}-keys"
    settings = Settings(ENGINE_ENV="test", redis_url=redis_url, queue_name=name)
    other = make_huey(Settings(ENGINE_ENV="test", redis_url=redis_url, queue_name="someone-elses-queue"))
    for huey in (make_huey(settings), make_huey(settings, "manychat"), other):
        huey.enqueue(huey.task()(lambda: None).s())
    RedisLimiter.from_url(redis_url, name).block("discord:global", 5.0)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        found = {key for pattern in queue_key_patterns(name) for key in client.scan_iter(match=pattern)}
        stripped = name.replace("-", "")
        assert found == {f"huey.redis.{stripped}", f"huey.redis.{stripped}manychat", f"{name}:ratelimit:discord:global"}
    finally:
        client.delete(*found, *client.keys("huey.*.someoneelsesqueue"))


def test_importing_the_worker_builds_no_queue(tmp_path):
    """Settings are read and var/ created when the queue is first used, not at import."""
    import subprocess
    import sys

    var_dir = tmp_path / "var"
    code = (
        "import engine.worker as w\n"
        "assert w._queue is None\n"
        "import os; assert not os.path.exists(os.environ['VAR_DIR'])\n"
        "names = sorted(w.get_huey()._registry._registry)\n"
        "print(' '.join(names))\n"
    )
    env = {"PATH": "", "ENGINE_ENV": "test", "VAR_DIR": str(var_dir), "QUEUE_NAME": "import-test"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    # No periodic sweep task: each worker sweeps every TIMER_POLL_SECONDS (SweepLoop), not by the minute.
    assert done.stdout.split() == [
        "engine.worker.drain_student_task",
        "engine.worker.process_event_task",
        "engine.worker.reconcile_task",
    ]
    assert (var_dir / "queue.db").exists()


# --- issue 10: no unread results, quiet outages, waiting for migrations -------------------


def test_huey_stores_no_results_nobody_reads(redis_url):
    import uuid

    huey = make_huey(Settings(ENGINE_ENV="test", redis_url=redis_url, queue_name=f"engine-test-{uuid.uuid4().hex}"))

    @huey.task()
    def answer() -> str:
        return "a result nobody reads"

    answer()
    huey.execute(huey.dequeue())
    assert huey.result_count() == 0
    assert huey.storage.conn.keys(f"*{huey.name}*") == []  # nothing left in Redis
    huey.flush()


class _Proxy:
    """A TCP proxy to Redis that can be cut and restored on the same port (an outage)."""

    def __init__(self, host: str, port: int):
        import socket

        self.target = (host, port)
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.listener = None
        self.sockets: list = []

    def up(self) -> None:
        import socket
        import threading

        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", self.port))
        self.listener.listen()
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def _accept(self, listener) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source, sink) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.close()

    def down(self) -> None:
        import socket

        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close alone may not)
        self.listener.close()
        for sock in self.sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            except OSError:
                pass
        self.sockets.clear()


@pytest.mark.slow
def test_a_redis_outage_is_one_warning_with_backoff_and_one_line_when_back(redis_url, caplog):
    import logging
    import signal
    import uuid
    from urllib.parse import urlsplit

    target = urlsplit(redis_url)
    proxy = _Proxy(target.hostname, target.port)
    proxy.up()
    url = f"redis://127.0.0.1:{proxy.port}{target.path}"
    huey = make_huey(Settings(ENGINE_ENV="test", redis_url=url, queue_name=f"engine-test-{uuid.uuid4().hex}"))
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    consumer = huey.create_consumer(workers=2, worker_type="thread", periodic=True)
    caplog.set_level(logging.INFO)
    consumer.start()
    for sig, handler in handlers.items():  # the consumer's own handlers belong to `engine worker`
        signal.signal(sig, handler)
    try:
        time.sleep(1)
        proxy.down()
        time.sleep(6)  # two workers and the scheduler poll all along
        during = [r for r in caplog.records if r.levelno >= logging.WARNING]
        unreachable = [r for r in during if "queue unreachable" in r.getMessage()]
        assert len(unreachable) == 1, [r.getMessage() for r in during]
        assert not [r for r in during if r.exc_info], "no traceback while Redis is down"
        proxy.up()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any("reachable again" in r.getMessage() for r in caplog.records):
            time.sleep(0.2)
        back = [r for r in caplog.records if "queue reachable again" in r.getMessage()]
        assert len(back) == 1
        assert not [r for r in caplog.records if r.exc_info]
    finally:
        consumer.stop(graceful=True)
        proxy.down()
        huey.storage.conn.connection_pool.disconnect()


@pytest.fixture
def fresh_database(postgres_url: str) -> Iterator[str]:
    """The URL of a new, empty database (no migrations), dropped after the test."""
    from tests.conftest import throwaway_database

    with throwaway_database("engine_test_fresh") as url:
        yield url


@pytest.mark.slow
def test_a_worker_started_beside_a_fresh_database_waits_for_the_migrations(fresh_database, redis_url, tmp_path):
    import os
    import subprocess

    import psycopg

    from engine.db.migrate import upgrade
    from tests.conftest import REPO, RULES
    from tests.e2e.conftest import ENGINE

    url = fresh_database
    env = {**os.environ, "ENGINE_ENV": "test", "DATABASE_URL": url, "REDIS_URL": redis_url, "RULES_DIR": str(RULES)}
    log_path = tmp_path / "worker.log"
    with log_path.open("w") as log:
        worker = subprocess.Popen([ENGINE, "worker", "--threads", "1"], env=env, cwd=REPO, stdout=log, stderr=log)
    try:

        def wait_for(predicate, what: str, timeout: float = 30) -> None:
            deadline = time.monotonic() + timeout
            while not predicate():
                assert time.monotonic() < deadline, f"timed out waiting for {what}: {log_path.read_text()}"
                time.sleep(0.2)

        wait_for(lambda: "waiting for the database migrations" in log_path.read_text(), "the waiting line")
        time.sleep(2)
        assert worker.poll() is None, log_path.read_text()  # waiting, not crashed
        assert log_path.read_text().count("waiting for the database migrations") == 1  # said once
        upgrade(Settings(ENGINE_ENV="test", database_url=url))

        def beating() -> bool:
            with psycopg.connect(url) as conn:
                return conn.execute("SELECT count(*) FROM heartbeats").fetchone()[0] == 1

        wait_for(beating, "the worker's first heartbeat")
        assert "relation" not in log_path.read_text()
    finally:
        worker.terminate()
        worker.wait(timeout=15)


def test_enqueueing_while_redis_is_down_reports_the_outage_once(caplog):
    import logging
    import socket

    import pytest

    with socket.socket() as probe:  # a port nobody listens on: Redis is down
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    huey = make_huey(Settings(ENGINE_ENV="test", redis_url=f"redis://127.0.0.1:{port}/0", queue_name="engine-down"))

    @huey.task()
    def noop() -> None:
        return None

    caplog.set_level(logging.INFO)
    for _ in range(5):
        with pytest.raises(Exception, match="Connection refused|Error"):
            noop()
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == ["queue unreachable"]


def test_a_settling_event_is_scheduled_on_the_queue(tmp_path, monkeypatch):
    """The settle window re-runs process_event_task later (huey's schedule), not at once."""
    import engine.worker as worker

    queue = worker.build_queue(Settings(ENGINE_ENV="test", var_dir=tmp_path))
    monkeypatch.setattr(worker, "_queue", queue)
    worker.schedule_event(42, 1.5)
    [task] = queue.huey.pending()
    assert (task.name, task.args) == ("process_event_task", (42,))
    assert task.eta is not None  # the consumer holds it until then


def test_reconcile_is_scheduled_from_the_setting_or_off(tmp_path):
    from engine.worker import build_queue

    def periodic(**overrides) -> dict[str, str]:
        queue = build_queue(Settings(ENGINE_ENV="test", var_dir=tmp_path, **overrides))
        return {task.__name__: task for task in queue.huey._registry._periodic_tasks}

    nightly = periodic()["reconcile_task"]
    from datetime import datetime

    assert nightly().validate_datetime(datetime(2026, 3, 2, 3, 30))  # default: 03:30 UTC every day
    assert not nightly().validate_datetime(datetime(2026, 3, 2, 4, 30))
    hourly = periodic(reconcile_schedule="0 * * * *")["reconcile_task"]
    assert hourly().validate_datetime(datetime(2026, 3, 2, 4, 0))
    assert "reconcile_task" not in periodic(reconcile_schedule="off")


def test_a_lane_consumer_leaves_the_stop_signals_to_the_main_consumer():
    """`engine worker` starts the ManyChat lane's consumer before the main one runs. Huey's
    Consumer.start() takes SIGTERM/SIGINT for the consumer whose run() acts on them; a lane that
    kept them would swallow a stop signal sent in between, and the worker would never stop."""
    import signal

    from huey import MemoryHuey

    from engine.worker import start_consumer

    def ours(signum, frame):  # the handler the process had
        raise AssertionError("not called here")

    previous = {signum: signal.signal(signum, ours) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        lane = start_consumer(MemoryHuey("lane-signals"), workers=1, worker_type="thread")
        try:
            assert signal.getsignal(signal.SIGTERM) is ours
            assert signal.getsignal(signal.SIGINT) is ours
            assert all(thread.is_alive() for _, thread in lane.worker_threads)  # started all the same
        finally:
            lane.stop(graceful=True)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _worker_env(database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    """The environment of an `engine worker` these tests start: this test's queue, the shipped rules."""
    import os

    from tests.conftest import RULES

    return {
        "PATH": os.environ["PATH"],
        "ENGINE_ENV": "test",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "QUEUE_NAME": os.environ["QUEUE_NAME"],
        "RULES_DIR": str(RULES),
        **extra,
    }


def test_a_stop_signal_while_the_worker_starts_stops_it_cleanly(fresh_database, redis_url, tmp_path):
    """SIGTERM before the main consumer takes the signals (here: waiting for the migrations) ends
    `engine worker` with exit code 0, as `docker compose stop` expects; it used to kill it (-15)."""
    import signal

    from tests.conftest import REPO
    from tests.e2e.processes import start_engine

    env = _worker_env(fresh_database, redis_url)
    worker = start_engine(["worker", "--threads", "1"], env=env, cwd=REPO, log=tmp_path / "worker.log")
    try:
        worker.wait_for_output("waiting for the database migrations")
        worker.terminate()
        assert worker.wait(timeout=10) == 0, worker.log.read_text()
        assert "Traceback" not in worker.log.read_text()
    finally:
        worker.send_signal(signal.SIGKILL)  # the database is dropped next: nothing may hold it


def test_a_stop_signal_ends_a_busy_worker_within_worker_stop_seconds(pg, redis_url, tmp_path):
    """A worker thread waiting for a student's lock (here: held by this test) does not keep the
    worker alive after SIGTERM: it exits within WORKER_STOP_SECONDS, and the unfinished event stays
    in the database, where the next worker's sweep finds it and processes it."""
    import json
    import signal

    import psycopg

    from engine.db.locks import Namespace
    from engine.db.session import session_factory
    from engine.pipeline.intake import store_hotmart
    from tests.conftest import REPO, load_payload
    from tests.e2e.conftest import remote_enqueue
    from tests.e2e.processes import start_engine

    email = "busy.worker@example.com"
    body = load_payload("purchase_approved.json")
    body["data"]["buyer"]["email"] = email
    with session_factory(Settings(ENGINE_ENV="test", database_url=pg)).begin() as session:
        event_id = store_hotmart(session, json.dumps(body).encode(), {}, held=False).event_id
    env = _worker_env(pg, redis_url, ORDER_SETTLE_SECONDS="0", WORKER_STOP_SECONDS="2", MANYCHAT_LANE_THREADS="1")
    dsn = pg.replace("postgresql+psycopg://", "postgresql://")
    waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%pg_advisory_lock%'"
    with psycopg.connect(dsn, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (int(Namespace.BUYER), email))
        worker = start_engine(["worker", "--threads", "1"], env=env, cwd=REPO, log=tmp_path / "busy.log")
        try:
            worker.wait_for_output("Huey consumer started")
            remote_enqueue(redis_url)(event_id)
            # The worker's thread waits for our lock.
            wait_until(
                lambda: holder.execute(waiting).fetchone()[0], timeout=30, what="the worker to wait for the lock"
            )
            worker.terminate()
            assert worker.wait(timeout=20) == 0, worker.log.read_text()  # WORKER_STOP_SECONDS is 2
            status = holder.execute("SELECT status FROM events WHERE id = %s", (event_id,)).fetchone()[0]
            assert status == "received"  # unfinished, not lost
        finally:
            worker.send_signal(signal.SIGKILL)

    # The lock is free again: the next worker's sweep queues the event again and it is processed.
    env.update({"STUCK_AFTER_SECONDS": "1", "TIMER_POLL_SECONDS": "1"})
    successor = start_engine(["worker", "--threads", "1"], env=env, cwd=REPO, log=tmp_path / "next.log")
    try:
        with psycopg.connect(dsn, autocommit=True) as reader:
            query = "SELECT status FROM events WHERE id = %s"
            wait_until(
                lambda: reader.execute(query, (event_id,)).fetchone()[0] in ("processed", "processing"),
                timeout=30,
                what="the next worker to process the event",
            )
    finally:
        successor.terminate()
        successor.wait(timeout=20)


def test_a_short_delay_is_queued_by_the_process_on_time_and_handed_to_huey_on_a_stop(tmp_path, monkeypatch):
    """Huey's scheduler reads its schedule once a second: a worker queues a settling webhook itself
    when it is due; stopping, it hands what is not due yet to Huey's schedule (nothing is lost)."""
    import engine.worker as worker

    queue = worker.build_queue(Settings(ENGINE_ENV="test", var_dir=tmp_path))
    monkeypatch.setattr(worker, "_queue", queue)
    delays = worker.ShortDelays()
    monkeypatch.setattr(worker, "short_delays", delays)
    delays.start()
    worker.schedule_event(42, 0.2)
    worker.schedule_event(43, 5.0)
    assert queue.huey.pending() == []  # held by this process, not by Huey
    [task] = wait_until(queue.huey.pending, timeout=10, what="the due event to be queued")
    assert (task.args, task.eta) == ((42,), None)  # queued to run now, at its time
    queue.huey.flush()

    delays.flush()  # a stop: 43 is not due yet
    [task] = queue.huey.pending()
    assert (task.name, task.args) == ("process_event_task", (43,))
    assert task.eta is not None
    worker.schedule_event(44, 0.1)  # after the stop: Huey's schedule
    assert [t.args for t in queue.huey.pending()] == [(43,), (44,)]
