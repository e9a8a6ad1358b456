"""No webhook for ALERT_NO_WEBHOOKS_HOURS raises one alert per silence (the sweep checks)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from engine.db.models import Alert, Event
from engine.pipeline.sweep import sweep
from tests.conftest import load_payload, rewriting_event_log


def silent_alerts(h) -> list[Alert]:
    with h.runtime.sessions() as session:
        return list(session.scalars(select(Alert).where(Alert.kind == "webhooks.silent").order_by(Alert.id)))


def last_webhook(h) -> datetime:
    with h.runtime.sessions() as session:
        return max(session.scalars(select(Event.received_at).where(Event.source == "hotmart")))


def test_one_alert_per_silence(make_harness):
    h = make_harness()
    h.deliver(load_payload("purchase_approved.json"))
    last = last_webhook(h)
    h.clock.now = last + timedelta(hours=23, minutes=59)
    sweep(h.runtime)
    assert silent_alerts(h) == []

    h.clock.now = last + timedelta(hours=24, minutes=1)
    sweep(h.runtime)
    [alert] = silent_alerts(h)
    assert alert.message.startswith(
        f"no Hotmart webhook for 24 hours (the last one arrived {last:%Y-%m-%d %H:%M} UTC; ALERT_NO_WEBHOOKS_HOURS=24)"
    )
    assert "Hotmart > Tools > Webhook" in alert.message
    for minutes in (1, 2, 60 * 24):  # the sweep runs every minute: the same silence, no new alert
        h.clock.advance(minutes=minutes)
        sweep(h.runtime)
    assert len(silent_alerts(h)) == 1

    # Webhooks come back, then stop again: a new silence, a new alert.
    back = h.deliver(load_payload("purchase_refunded.json"))
    with h.runtime.sessions.begin() as session, rewriting_event_log(session):  # received at the clock's "now"
        session.get(Event, back).received_at = h.clock.now
    sweep(h.runtime)
    assert len(silent_alerts(h)) == 1
    h.clock.advance(hours=25)
    sweep(h.runtime)
    assert len(silent_alerts(h)) == 2


def test_zero_turns_it_off(make_harness):
    off = make_harness(alert_no_webhooks_hours=0)
    off.deliver(load_payload("purchase_approved.json"))
    off.clock.now = last_webhook(off) + timedelta(days=30)
    sweep(off.runtime)
    assert silent_alerts(off) == []


def test_no_webhook_ever_is_no_silence(make_harness):
    fresh = make_harness(alert_no_webhooks_hours=1)
    fresh.clock.now = datetime.now(UTC) + timedelta(days=30)
    sweep(fresh.runtime)
    assert silent_alerts(fresh) == []


def test_the_threshold_is_a_setting(make_harness):
    h = make_harness(alert_no_webhooks_hours=0.5)
    h.deliver(load_payload("purchase_approved.json"))
    h.clock.now = last_webhook(h) + timedelta(minutes=31)
    sweep(h.runtime)
    [alert] = silent_alerts(h)
    assert "ALERT_NO_WEBHOOKS_HOURS=0.5" in alert.message
