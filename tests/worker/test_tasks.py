"""The worker's tasks and this process's queue: built on first use, their names, what they schedule."""

from __future__ import annotations

from engine.settings import Settings


def test_importing_the_worker_builds_no_queue(tmp_path):
    """Settings are read and var/ created when the queue is first used, not at import."""
    import subprocess
    import sys

    var_dir = tmp_path / "var"
    code = (
        "import engine.worker.tasks as w\n"
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
    import engine.worker.tasks as worker

    queue = worker.build_queue(Settings(ENGINE_ENV="test", var_dir=tmp_path))
    monkeypatch.setattr(worker, "_queue", queue)
    worker.task_queue().schedule_event(42, 1.5)
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


def test_the_hotmart_sync_is_scheduled_only_when_enabled(tmp_path):
    from datetime import datetime

    from engine.worker import build_queue

    credentials = {"hotmart_client_id": "id", "hotmart_client_secret": "secret", "hotmart_basic": "basic"}

    def periodic(**overrides) -> dict[str, str]:
        queue = build_queue(Settings(ENGINE_ENV="test", var_dir=tmp_path, **credentials, **overrides))
        return {task.__name__: task for task in queue.huey._registry._periodic_tasks}

    assert "hotmart_sync_task" not in periodic()  # HOTMART_SYNC_ENABLED off by default
    every_six_hours = periodic(hotmart_sync_enabled=True)["hotmart_sync_task"]
    assert [hour for hour in range(24) if every_six_hours().validate_datetime(datetime(2026, 3, 2, hour, 0))] == [
        0,
        6,
        12,
        18,
    ]
    assert not every_six_hours().validate_datetime(datetime(2026, 3, 2, 6, 30))
    hourly = periodic(hotmart_sync_enabled=True, hotmart_sync_schedule="5 * * * *")["hotmart_sync_task"]
    assert hourly().validate_datetime(datetime(2026, 3, 2, 4, 5))
    assert "hotmart_sync_task" not in periodic(hotmart_sync_enabled=True, hotmart_sync_schedule="off")
