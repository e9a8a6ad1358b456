"""Every status belongs to its groups; a step's final status is a connector's result status."""

from __future__ import annotations

from connectors.base import StepStatus
from engine.statuses import (
    FINAL_EVENT_STATUSES,
    FINAL_RUN_STATUSES,
    OPEN_EVENT_STATUSES,
    OPEN_RUN_STATUSES,
    EventStatus,
    RunStatus,
)


def test_event_statuses_are_waiting_open_or_final_and_nothing_else():
    waiting = {EventStatus.RECEIVED, EventStatus.HELD}
    groups = [waiting, set(OPEN_EVENT_STATUSES), set(FINAL_EVENT_STATUSES)]
    assert set.union(*groups) == set(EventStatus)
    assert sum(len(group) for group in groups) == len(EventStatus)  # disjoint


def test_run_statuses_are_open_or_final_and_a_final_one_is_a_result_status():
    assert set(OPEN_RUN_STATUSES).isdisjoint(FINAL_RUN_STATUSES)
    assert set(OPEN_RUN_STATUSES) | set(FINAL_RUN_STATUSES) == set(RunStatus)
    assert {status.value for status in FINAL_RUN_STATUSES} == {status.value for status in StepStatus}
