"""The queues: Redis when REDIS_URL is set, SQLite otherwise; priorities, lanes, quiet outages."""

from __future__ import annotations

import contextlib
import time

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
        wait_until(
            lambda: any("reachable again" in r.getMessage() for r in caplog.records), 20, "the queue reachable again"
        )
        back = [r for r in caplog.records if "queue reachable again" in r.getMessage()]
        assert len(back) == 1
        assert not [r for r in caplog.records if r.exc_info]
    finally:
        consumer.stop(graceful=True)
        proxy.down()
        huey.storage.conn.connection_pool.disconnect()


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
