"""The worker process: consumers and the stop signals, waiting for the migrations, a stop bounded by
WORKER_STOP_SECONDS, short settle delays."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from engine.settings import Settings
from tests.conftest import wait_until


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

        def wait_for(predicate, what: str) -> None:
            try:
                wait_until(predicate, 30, what)
            except AssertionError as exc:  # with what the worker said
                raise AssertionError(f"{exc}: {log_path.read_text()}") from None

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
    from engine.pipeline.intake import store_webhook
    from engine.sources.hotmart import SOURCE as HOTMART
    from tests.conftest import REPO, load_payload
    from tests.e2e.conftest import remote_enqueue
    from tests.e2e.processes import start_engine

    email = "busy.worker@example.com"
    body = load_payload("purchase_approved.json")
    body["data"]["buyer"]["email"] = email
    with session_factory(Settings(ENGINE_ENV="test", database_url=pg)).begin() as session:
        event_id = store_webhook(HOTMART, session, json.dumps(body).encode(), {}, held=False).event_id
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


def test_a_short_delay_is_queued_by_the_process_on_time_and_handed_to_huey_on_a_stop(tmp_path):
    """Huey's scheduler reads its schedule once a second: a worker queues a settling webhook itself
    when it is due; stopping, it hands what is not due yet to Huey's schedule (nothing is lost)."""
    from engine.worker import HueyQueue, build_queue

    queue = build_queue(Settings(ENGINE_ENV="test", var_dir=tmp_path))
    tasks = HueyQueue(lambda: queue)  # with short delays of its own, started here
    delays = tasks.short_delays
    delays.start()
    tasks.schedule_event(42, 0.2)
    tasks.schedule_event(43, 5.0)
    assert queue.huey.pending() == []  # held by this process, not by Huey
    [task] = wait_until(queue.huey.pending, timeout=10, what="the due event to be queued")
    assert (task.args, task.eta) == ((42,), None)  # queued to run now, at its time
    queue.huey.flush()

    delays.flush()  # a stop: 43 is not due yet
    [task] = queue.huey.pending()
    assert (task.name, task.args) == ("process_event_task", (43,))
    assert task.eta is not None
    tasks.schedule_event(44, 0.1)  # after the stop: Huey's schedule
    assert [t.args for t in queue.huey.pending()] == [(43,), (44,)]
