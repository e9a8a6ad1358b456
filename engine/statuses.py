"""The statuses of events (``events.status``), of their steps (``action_runs.status``) and of
timers (``scheduled_events.status``), with their groups.

No dependencies: the CLI reads these at import time.
"""

from __future__ import annotations

from enum import StrEnum


class EventStatus(StrEnum):
    RECEIVED = "received"  # stored, not planned yet
    HELD = "held"  # stored while HOTMART_ENABLED is off
    PROCESSING = "processing"  # planned; steps to run
    RETRYING = "retrying"  # a step waits for its automatic retry
    PROCESSED = "processed"
    IGNORED = "ignored"  # the rules decided nothing applies (reason says why)
    NEEDS_ATTENTION = "needs_attention"  # what the rules do not know or cannot process: alerted, replayable
    FAILED = "failed"  # a step failed; an admin was alerted
    REJECTED = "rejected"  # the body could not be stored as an event (not JSON ...)


class RunStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    RETRYING = "retrying"
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"


class TimerStatus(StrEnum):
    PENDING = "pending"  # waits for its due time
    FIRED = "fired"  # its internal event was stored
    CANCELLED = "cancelled"  # a later event made it moot


# Planned events whose steps the worker still runs.
OPEN_EVENT_STATUSES = (EventStatus.PROCESSING, EventStatus.RETRYING)
# Nothing more happens unless an admin retries or replays.
FINAL_EVENT_STATUSES = (
    EventStatus.PROCESSED,
    EventStatus.IGNORED,
    EventStatus.NEEDS_ATTENTION,
    EventStatus.FAILED,
    EventStatus.REJECTED,
)
# Still on their way: a replay would race the worker.
IN_FLIGHT_EVENT_STATUSES = (EventStatus.RECEIVED, EventStatus.HELD, EventStatus.PROCESSING, EventStatus.RETRYING)
# Decided (or refused) events an admin may replay against the current rules.
REPLAYABLE_EVENT_STATUSES = (
    EventStatus.NEEDS_ATTENTION,
    EventStatus.IGNORED,
    EventStatus.FAILED,
    EventStatus.PROCESSED,
    EventStatus.REJECTED,
)
# Steps not done yet, in the order the worker picks them up.
OPEN_RUN_STATUSES = (RunStatus.PENDING, RunStatus.RUNNING, RunStatus.RETRYING)
FINAL_RUN_STATUSES = (RunStatus.DONE, RunStatus.SKIPPED, RunStatus.FAILED)
