"""Scheduling on the pipeline: lanes, the in-flight mark, transactions per event."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import select

from connectors.base import StepResult
from engine.db.models import ActionRun, Alert, Event
from engine.pipeline.execution import run_student
from engine.pipeline.intake import store_webhook
from engine.pipeline.processing import process_event
from engine.sources.hotmart import SOURCE as HOTMART
from tests.conftest import MANYCHAT_ACTIONS, load_payload


class WorkerKilled(BaseException):
    """Stands for the process dying."""


class SlowFlows:
    """A ManyChat stand-in whose flow step dies where the test says: before or after the write."""

    name = "manychat"
    actions = MANYCHAT_ACTIONS

    def __init__(self, die: str | None):
        self.die = die
        self.sent: list[str] = []

    def run(self, step, ctx):
        if step.action != "trigger_flow":
            return StepResult.done("ok")
        if self.die == "waiting for the slot":
            raise WorkerKilled()  # still looking up the subscriber / sleeping in the limiter
        ctx.before_send()
        if self.die == "after the write":
            self.sent.append(step.params["flow_ns"])
            raise WorkerKilled()
        self.sent.append(step.params["flow_ns"])
        return StepResult.done("sent")


def stored_purchase(h) -> int:
    with h.runtime.sessions.begin() as session:
        stored = store_webhook(
            HOTMART, session, json.dumps(load_payload("purchase_approved.json")).encode(), {}, held=False
        )
    return stored.event_id


def steps(h, event_id: int) -> list[tuple[str, str]]:
    with h.runtime.sessions() as session:
        runs = session.scalars(select(ActionRun).where(ActionRun.event_id == event_id).order_by(ActionRun.step_index))
        return [(r.action, r.status) for r in runs]


def test_stopped_while_waiting_for_its_slot_the_flow_is_sent_once_on_restart(make_harness):
    """Issue 9 part 6 / story 31: waiting for a rate-limit slot is not "in flight"."""
    manychat = SlowFlows(die="waiting for the slot")
    h = make_harness(connectors=dict.fromkeys(MANYCHAT_ACTIONS, manychat))
    event_id = stored_purchase(h)
    with pytest.raises(WorkerKilled):
        process_event(h.runtime, event_id)
    assert ("trigger_flow", "pending") in steps(h, event_id)
    manychat.die = None
    assert process_event(h.runtime, event_id) == "processed"
    assert len(manychat.sent) == 1
    with h.runtime.sessions() as session:
        assert session.scalars(select(Alert)).all() == []


def test_stopped_after_the_write_the_flow_may_have_been_delivered(make_harness):
    manychat = SlowFlows(die="after the write")
    h = make_harness(connectors=dict.fromkeys(MANYCHAT_ACTIONS, manychat))
    event_id = stored_purchase(h)
    with pytest.raises(WorkerKilled):
        process_event(h.runtime, event_id)
    manychat.die = None
    assert process_event(h.runtime, event_id) == "failed"
    assert len(manychat.sent) == 1  # never re-sent
    with h.runtime.sessions() as session:
        alert = session.scalars(select(Alert)).one()
    assert alert.kind == "worker.interrupted" and "may have been delivered" in alert.message


def test_a_manychat_step_is_handed_to_its_lane(make_harness):
    h = make_harness()
    handed = h.queue.handed
    h.runtime.lanes = {"manychat": "manychat"}
    event_id = stored_purchase(h)
    assert process_event(h.runtime, event_id) == "processing"
    # The code is issued, then the student goes to the ManyChat lane; no ManyChat call here.
    assert steps(h, event_id)[:2] == [("issue_token", "done"), ("add_tag", "pending")]
    assert h.manychat.calls == []
    with h.runtime.sessions() as session:
        student_id = session.get(Event, event_id).student_id
    assert handed == [(student_id, "manychat")]
    run_student(h.runtime, student_id, lane="manychat")  # what the lane's thread runs
    assert steps(h, event_id) == [(action, "done") for action, _ in steps(h, event_id)]
    assert h.manychat.actions_called() == ["add_tag", "set_field", "trigger_flow"]


def test_a_role_change_takes_three_transactions(make_harness, pg):
    h = make_harness()
    h.deliver(load_payload("purchase_approved.json"))
    from tests.pipeline.test_processing import link

    link(h)
    from engine.pipeline.intake import store_internal

    with h.runtime.sessions.begin() as session:
        event = session.scalars(select(Event).where(Event.type == "DISCORD_LINKED")).one()
        stored = store_internal(
            session,
            "MEMBER_JOINED",
            email=event.email,
            student_id=event.student_id,
            source="bot",
            fields={"discord_id": "80351110224678912"},
        )
    commits: list[int] = []
    engine = h.runtime.sessions.kw["bind"]
    listener = lambda connection: commits.append(1)  # noqa: E731
    sa_event.listen(engine, "commit", listener)
    try:
        assert process_event(h.runtime, stored.event_id) == "processed"
    finally:
        sa_event.remove(engine, "commit", listener)
    assert h.discord.actions_called()[-1] == "add_role"
    assert len(commits) == 3  # plan (with the lock), the role's result, the unlock


def test_the_sweep_requeues_a_stuck_event_once(make_harness):
    from datetime import timedelta

    from engine.db.models import utcnow
    from engine.pipeline.sweep import requeue_stuck

    h = make_harness()
    event_id = stored_purchase(h)  # stored, never processed (its task was lost)
    h.clock.now = utcnow()  # the intake stamps received_at with the real clock
    assert requeue_stuck(h.runtime) == []  # not stuck yet
    h.clock.advance(seconds=h.runtime.settings.stuck_after_seconds + 1)
    assert requeue_stuck(h.runtime) == [event_id]
    assert requeue_stuck(h.runtime) == []  # another process sweeping now finds it already queued
    h.clock.advance(seconds=h.runtime.settings.stuck_after_seconds + 1)
    assert requeue_stuck(h.runtime) == [event_id]  # still not done a period later: once more
    with h.runtime.sessions() as session:
        assert session.get(Event, event_id).enqueued_at == h.clock.now
    assert timedelta(seconds=h.runtime.settings.stuck_after_seconds) == timedelta(minutes=2)


def test_every_enqueue_records_enqueued_at_so_the_sweep_waits_a_full_period_after_it(make_harness):
    """The sweep requeues what was queued STUCK_AFTER_SECONDS ago and is unfinished: an event the
    intake stored, or a replay, a retry or a release queued just now, is not queued a second time."""
    from datetime import timedelta

    from engine.db.models import utcnow
    from engine.pipeline.replay import replay
    from engine.pipeline.sweep import release_held, requeue_stuck
    from engine.service.retry import retry_event

    h = make_harness(hotmart_enabled=True)
    period = timedelta(seconds=h.runtime.settings.stuck_after_seconds + 1)

    def enqueued_at(event_id: int):
        with h.runtime.sessions() as session:
            return session.get(Event, event_id).enqueued_at

    event_id = stored_purchase(h)
    with h.runtime.sessions() as session:
        stored = session.get(Event, event_id)
        assert stored.enqueued_at == stored.received_at  # its caller queues it once committed
    h.clock.now = utcnow() + period
    assert process_event(h.runtime, event_id) == "processed"

    replay(h.runtime, [event_id], actor="test")
    assert enqueued_at(event_id) == h.clock.now
    assert requeue_stuck(h.runtime) == []  # received a period ago, but queued just now
    h.clock.advance(seconds=period.total_seconds())
    assert requeue_stuck(h.runtime) == [event_id]  # a period after the replay, still not done

    h.clock.advance(seconds=period.total_seconds())
    assert retry_event(h.runtime, event_id) == "queued"  # received, never processed: queued again
    assert enqueued_at(event_id) == h.clock.now
    assert requeue_stuck(h.runtime) == []

    with h.runtime.sessions.begin() as session:
        held = store_webhook(
            HOTMART, session, json.dumps(load_payload("purchase_refunded.json")).encode(), {}, held=True
        ).event_id
    assert enqueued_at(held) is None  # held: nobody queued it
    h.clock.advance(seconds=period.total_seconds())
    assert release_held(h.runtime) == [held]
    assert enqueued_at(held) == h.clock.now
    assert held not in requeue_stuck(h.runtime)


def test_a_pool_too_big_for_the_server_is_reported(pg):
    from engine.db.session import check_connection_budget, dispose_all
    from engine.settings import Settings

    dispose_all()
    try:
        fits = Settings(ENGINE_ENV="test", database_url=pg, database_pool_size=5)
        assert check_connection_budget(fits) is None
        dispose_all()
        huge = Settings(ENGINE_ENV="test", database_url=pg, database_pool_size=500)
        warning = check_connection_budget(huge, role="this worker")
        assert warning is not None and "max_connections=" in warning and "this worker may open 502" in warning
    finally:
        dispose_all()


def test_engine_doctor_says_how_many_workers_fit(pg):
    from engine.db.session import dispose_all
    from engine.doctor.core import OK, WARN, connection_budget_check, database_connection
    from engine.settings import Settings

    settings = Settings(ENGINE_ENV="test", database_url=pg)
    try:
        with database_connection(settings) as connection:
            check = connection_budget_check(settings, connection)
            assert check.status == OK and "opens up to 17: room for" in check.message
            check = connection_budget_check(settings.model_copy(update={"database_pool_size": 500}), connection)
            assert check.status == WARN and "room for 0 more" in check.message
    finally:
        dispose_all()
