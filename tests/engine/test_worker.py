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
