"""The queue: Redis when REDIS_URL is set, SQLite otherwise."""

from __future__ import annotations

from huey import RedisHuey, SqliteHuey

from engine.settings import Settings
from engine.worker import make_huey


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
