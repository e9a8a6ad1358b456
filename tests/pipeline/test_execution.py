"""Execution hands each step its event's correlation id, and logs it with the step's failures."""

from __future__ import annotations

import logging

from engine.db.models import Event
from tests.conftest import load_payload


def test_every_step_carries_its_events_correlation_id(make_harness):
    h = make_harness()
    event_id = h.deliver(load_payload("purchase_approved.json"))
    with h.runtime.sessions() as session:
        correlation_id = session.get(Event, event_id).correlation_id
    calls = h.manychat.calls + h.discord.calls
    assert calls and correlation_id
    assert {ctx.correlation_id for _, ctx in calls} == {correlation_id}


def test_a_connector_that_raises_is_logged_with_the_correlation_id(make_harness, caplog):
    h = make_harness()

    def explode(step, ctx):
        raise RuntimeError("boom")

    h.manychat.results["add_tag"] = explode
    with caplog.at_level(logging.ERROR, logger="engine.pipeline.execution"):
        event_id = h.deliver(load_payload("purchase_approved.json"))
    with h.runtime.sessions() as session:
        correlation_id = session.get(Event, event_id).correlation_id
    assert any(f"(correlation {correlation_id})" in record.getMessage() for record in caplog.records)
