"""Timers live in the database and fire through the same pipeline (controllable clock)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from engine.db.models import Event, ScheduledEvent
from engine.pipeline.sweep import fire_due_timers, requeue_stuck, sweep
from tests.conftest import load_payload
from tests.pipeline.test_processing import link, states


def timers(h) -> list[tuple[str, str]]:
    with h.runtime.sessions() as session:
        rows = session.scalars(select(ScheduledEvent).order_by(ScheduledEvent.id))
        return [(t.event_type, t.status) for t in rows]


def test_onboarding_reminder_fires_once_after_24h(make_harness):
    h = make_harness()
    h.deliver(load_payload("purchase_approved.json"))
    assert timers(h) == [("ONBOARDING_REMINDER", "pending"), ("TOKEN_EXPIRED", "pending")]
    h.clock.advance(hours=23)
    assert fire_due_timers(h.runtime) == []
    h.clock.advance(hours=1, seconds=1)
    fired = fire_due_timers(h.runtime)
    assert len(fired) == 1
    h.run_queue()
    assert fire_due_timers(h.runtime) == []  # fired once, not again
    h.clock.advance(hours=1)
    assert fire_due_timers(h.runtime) == []
    flows = [s.params["flow"] for s, _ in h.manychat.calls if s.action == "trigger_flow"]
    assert flows == ["onboarding", "onboarding_reminder"]
    assert states(h) == {"curso": "pending_onboarding"}


def test_linking_cancels_the_onboarding_timers(make_harness):
    h = make_harness()
    h.deliver(load_payload("purchase_approved.json"))
    link(h)
    assert timers(h) == [("ONBOARDING_REMINDER", "cancelled"), ("TOKEN_EXPIRED", "cancelled")]
    h.clock.advance(days=8)
    assert fire_due_timers(h.runtime) == []


def test_code_expiry_issues_a_new_code_and_alerts(make_harness):
    h = make_harness()
    h.deliver(load_payload("purchase_approved.json"))
    h.clock.advance(days=7, seconds=1)
    sweep(h.runtime)
    h.run_queue()
    codes = [s.params["value"] for s, _ in h.manychat.calls if s.action == "set_field"]
    assert len(codes) == 2 and codes[0] != codes[1]
    from engine.db.models import Alert, OnboardingToken

    with h.runtime.sessions() as session:
        tokens = session.scalars(select(OnboardingToken).order_by(OnboardingToken.id)).all()
        assert tokens[0].revoked_at is not None and tokens[1].revoked_at is None
        assert "não concluiu o onboarding" in session.scalars(select(Alert)).one().message


def test_cancelled_subscription_keeps_access_until_paid_until_then_churns(make_harness):
    h = make_harness()
    first = load_payload("purchase_approved_subscription_first.json")
    h.deliver(first)
    link(h)
    assert states(h) == {"comunidade": "active"}
    cancellation = load_payload("subscription_cancellation.json")
    # Set the clock 12 days before the paid-until date (SCENARIOS story 8).
    paid_until = datetime.fromtimestamp(cancellation["data"]["date_next_charge"] / 1000).astimezone()
    from datetime import timedelta

    h.clock.now = paid_until - timedelta(days=12)
    h.deliver(cancellation)
    assert states(h) == {"comunidade": "cancelled"}
    removed = [s for s, _ in h.discord.calls if s.action == "remove_role"]
    assert removed == []  # access kept
    h.clock.advance(days=11)
    assert fire_due_timers(h.runtime) == []
    h.clock.advance(days=1, seconds=1)
    assert len(fire_due_timers(h.runtime)) == 1
    h.run_queue()
    assert states(h) == {"comunidade": "churned"}
    removed = [s.params["role_ids"] for s, _ in h.discord.calls if s.action == "remove_role"]
    assert removed == [["1180000000000000002"]]
    tags = [(s.action, s.params["tags"]) for s, _ in h.manychat.calls if s.action.endswith("_tag")]
    assert tags[-2:] == [("remove_tag", ["assinante"]), ("add_tag", ["ex-assinante"])]


def test_resubscribing_before_the_end_cancels_the_access_end(make_harness):
    h = make_harness()
    h.deliver(load_payload("purchase_approved_subscription_first.json"))
    link(h)
    cancellation = load_payload("subscription_cancellation.json")
    h.clock.now = datetime.fromtimestamp(cancellation["data"]["date_next_charge"] / 1000).astimezone()

    h.clock.advance(days=-5)
    h.deliver(cancellation)
    renewal = load_payload("purchase_approved_renewal.json")
    renewal["creation_date"] = cancellation["creation_date"] + 1000
    h.deliver(renewal)
    assert states(h) == {"comunidade": "active"}
    assert ("ACCESS_ENDS", "cancelled") in timers(h)
    h.clock.advance(days=30)
    assert fire_due_timers(h.runtime) == []


def test_sweep_requeues_events_lost_by_the_queue(make_harness):
    h = make_harness()
    import json

    from engine.pipeline.intake import store_webhook
    from engine.sources.hotmart import SOURCE as HOTMART

    with h.runtime.sessions.begin() as session:
        body = json.dumps(load_payload("purchase_approved.json")).encode()
        stored = store_webhook(HOTMART, session, body, {}, held=False, received_at=h.clock.now)
    assert requeue_stuck(h.runtime) == []  # too fresh: it is probably in the queue
    h.clock.advance(minutes=3)
    assert requeue_stuck(h.runtime) == [stored.event_id]
    h.run_queue()
    with h.runtime.sessions() as session:
        assert session.get(Event, stored.event_id).status == "processed"


def test_the_sweep_loop_fires_due_timers_within_timer_poll_seconds(make_harness):
    import time

    from engine.pipeline.sweep import SweepLoop

    h = make_harness(timer_poll_seconds=0.2)
    h.deliver(load_payload("purchase_approved.json"))
    h.clock.advance(hours=24, seconds=1)  # the reminder is due; nobody calls the sweep by hand
    loop = SweepLoop(lambda: h.runtime, h.runtime.settings.timer_poll_seconds).start()
    try:
        deadline = time.monotonic() + 5
        while ("ONBOARDING_REMINDER", "fired") not in timers(h) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        loop.stop()
    assert timers(h) == [("ONBOARDING_REMINDER", "fired"), ("TOKEN_EXPIRED", "pending")]
    assert len(h.queued) == 1  # the timer's event went to the queue


def test_the_sweep_loop_survives_a_failing_sweep():
    import threading

    from engine.pipeline.sweep import SweepLoop

    calls: list[int] = []
    three = threading.Event()

    def flaky(_rt) -> None:
        calls.append(1)
        if len(calls) >= 3:
            three.set()
        raise RuntimeError("database blip")

    loop = SweepLoop(lambda: None, 0.02, run=flaky).start()
    assert three.wait(5)
    loop.stop()
    assert len(calls) >= 3


def test_timer_poll_seconds_must_be_positive():
    import pytest
    from pydantic import ValidationError

    from engine.settings import Settings

    with pytest.raises(ValidationError, match="timer_poll_seconds"):
        Settings(ENGINE_ENV="test", timer_poll_seconds=0, _env_file=None)
