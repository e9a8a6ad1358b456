"""The work queue as the pipeline sees it: one narrow interface, whatever runs the tasks.

The worker's implementation is Huey's (:mod:`engine.worker`); a process without a worker (the
CLI's one-off commands) may drop what it would queue, since every event is stored first and the
sweep picks up what no task took; tests and tools hold the queue in memory and run it by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


class TaskQueue(Protocol):
    def enqueue(self, event_id: int, *, urgent: bool = False) -> None:
        """Process the stored event soon; ``urgent``: ahead of bulk work (a student is waiting)."""

    def schedule_event(self, event_id: int, delay: float) -> None:
        """Process the event again after ``delay`` seconds (a webhook still settling)."""

    def schedule_drain(self, student_id: int, delay: float) -> None:
        """Run the student's open steps after ``delay`` seconds (a step's automatic retry)."""

    def hand_off(self, student_id: int, lane: str) -> None:
        """Continue the student's steps in ``lane`` (the queue whose threads wait for that service)."""


class NoQueue:
    """Queues nothing (a runtime's default): the sweep enqueues the stored events no task took,
    unfinished or with an overdue retry, after STUCK_AFTER_SECONDS."""

    def enqueue(self, event_id: int, *, urgent: bool = False) -> None:
        pass

    def schedule_event(self, event_id: int, delay: float) -> None:
        pass

    def schedule_drain(self, student_id: int, delay: float) -> None:
        pass

    def hand_off(self, student_id: int, lane: str) -> None:
        pass


@dataclass
class MemoryQueue:
    """The queue as lists, in the order things were asked; whoever holds it runs them."""

    events: list[int] = field(default_factory=list)  # to process now
    urgent: set[int] = field(default_factory=set)  # those of them a student waits for
    deferred: list[tuple[int, float]] = field(default_factory=list)  # (event, delay): still settling
    drains: list[tuple[int, float]] = field(default_factory=list)  # (student, delay)
    handed: list[tuple[int, str]] = field(default_factory=list)  # (student, lane)

    def enqueue(self, event_id: int, *, urgent: bool = False) -> None:
        self.events.append(event_id)
        if urgent:
            self.urgent.add(event_id)

    def schedule_event(self, event_id: int, delay: float) -> None:
        self.deferred.append((event_id, delay))

    def schedule_drain(self, student_id: int, delay: float) -> None:
        self.drains.append((student_id, delay))

    def hand_off(self, student_id: int, lane: str) -> None:
        self.handed.append((student_id, lane))
