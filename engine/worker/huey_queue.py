"""The pipeline's task queue (:class:`engine.pipeline.queue.TaskQueue`) on this process's Huey queues.

* Priority: an urgent event (a student waits: a link, a join, an admin's new code) is queued with
  :data:`URGENT`, ahead of bulk work; what a task schedules or hands off keeps the priority of the
  task this thread runs (:meth:`HueyQueue.running`).
* Nothing is lost when the queue fails: the event is stored first and the sweep enqueues what no
  task took, so a failure is logged, never raised; a Redis outage is reported once (QueueOutage)
  and an event queued meanwhile only at debug level.
* A settling webhook due within seconds is queued by this process on time (:class:`ShortDelays`),
  once a worker has started them; a longer delay goes to Huey's schedule.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from engine.worker.consumer import ShortDelays
from engine.worker.queues import URGENT, Queue, queue_down

log = logging.getLogger(__name__)


class HueyQueue:
    def __init__(self, queue: Callable[[], Queue]) -> None:
        self._queue = queue  # the Huey queues and their tasks, built on first use
        self._running = threading.local()  # .priority: that of the task this thread runs
        self.short_delays = ShortDelays(enqueue=self._enqueue, schedule=self._schedule_event)

    def running(self, priority: int) -> None:
        """This thread now runs a task of ``priority``: what it schedules or hands off keeps it."""
        self._running.priority = priority

    def enqueue(self, event_id: int, *, urgent: bool = False) -> None:
        """Queue an event (``urgent``: ahead of bulk work); if the queue is down the sweep picks it up later."""
        self._enqueue(event_id, URGENT if urgent else 0)

    def schedule_event(self, event_id: int, delay: float) -> None:
        """Process the event again after ``delay`` seconds (a webhook still settling)."""
        priority = self._priority()
        if self.short_delays.take(event_id, delay, priority):
            return
        self._schedule_event(event_id, delay, priority)

    def schedule_drain(self, student_id: int, delay: float) -> None:
        try:
            self._queue().drain_student.schedule((student_id,), delay=max(delay, 0.0))
        except Exception:  # noqa: BLE001
            log.warning("could not schedule the retry for student %s; the sweep will", student_id, exc_info=True)

    def hand_off(self, student_id: int, lane: str) -> None:
        """Continue a student's steps in ``lane`` (at the priority of the task handing over)."""
        try:
            self._queue().lanes[lane][1](student_id, priority=self._priority())
        except Exception:  # noqa: BLE001
            log.warning("could not hand student %s to lane %s; the sweep will", student_id, lane, exc_info=True)

    def _priority(self) -> int:
        return getattr(self._running, "priority", 0)

    def _enqueue(self, event_id: int, priority: int) -> None:
        try:
            self._queue().process_event(event_id, priority=priority)
        except Exception as exc:  # noqa: BLE001 - the event is stored; never lose the request over the queue
            if queue_down(exc):  # the outage itself was reported once (QueueOutage): no line per event
                log.debug("queue down; event %s waits for the sweep", event_id)
            else:
                log.warning("could not enqueue event %s; the sweep will retry", event_id, exc_info=True)

    def _schedule_event(self, event_id: int, delay: float, priority: int) -> None:
        try:
            self._queue().process_event.schedule((event_id,), delay=max(delay, 0.0), priority=priority)
        except Exception:  # noqa: BLE001
            log.warning("could not schedule event %s; the sweep will enqueue it", event_id, exc_info=True)
