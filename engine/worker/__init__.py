"""The worker: Huey queues (Redis, or SQLite for the embedded default) and the tasks that run the pipeline.

Run a worker with ``engine worker``: it consumes the main queue and each lane's queue, and runs
the sweep every TIMER_POLL_SECONDS (engine.pipeline.sweep.SweepLoop; a bare
``huey_consumer engine.worker.huey`` would neither sweep nor serve the lanes).

- :mod:`engine.worker.queues`: the Huey instances, priorities, lanes, quiet Redis outages;
- :mod:`engine.worker.tasks`: the tasks, this process's queue, task queue and runtime;
- :mod:`engine.worker.huey_queue`: the pipeline's task queue on Huey (priorities, hand-off, settle delays);
- :mod:`engine.worker.consumer`: consumers, the graceful stop with its deadline, short settle delays;
- :mod:`engine.worker.heartbeat_file`: the heartbeat files of the worker's and the bot's healthchecks.
"""

from engine.worker.consumer import ShortDelays, StopDeadline, StoppingConsumer, start_consumer
from engine.worker.huey_queue import HueyQueue
from engine.worker.queues import LANES, URGENT, Queue, make_huey, queue_key_patterns
from engine.worker.tasks import build_queue, enable_lanes, get_huey, get_queue, runtime, task_queue

__all__ = [
    "LANES",
    "URGENT",
    "HueyQueue",
    "Queue",
    "ShortDelays",
    "StopDeadline",
    "StoppingConsumer",
    "build_queue",
    "enable_lanes",
    "get_huey",
    "get_queue",
    "make_huey",
    "queue_key_patterns",
    "runtime",
    "start_consumer",
    "task_queue",
]


def __getattr__(name: str) -> object:
    # ``huey_consumer engine.worker.huey`` and ``from engine.worker import huey``: built on first use.
    if name == "huey":
        return get_huey()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
