"""A step the rules skip for a product (a flow it declines) is recorded as skipped, with the reason."""

from __future__ import annotations

from sqlalchemy import select

from engine.db.models import ActionRun, Event
from tests.conftest import load_payload
from tests.engine.test_optional_flows import curso_declines_billet_reminder


def test_a_declined_flow_is_recorded_as_skipped_and_never_sent(make_harness, tmp_path):
    h = make_harness(rules_dir=curso_declines_billet_reminder(tmp_path))
    payload = load_payload("purchase_billet_printed.json")
    payload["data"]["product"]["id"] = 1111111  # curso
    event_id = h.deliver(payload)
    with h.runtime.sessions() as session:
        event = session.get(Event, event_id)
        runs = session.scalars(select(ActionRun).where(ActionRun.event_id == event_id)).all()
        assert event.status == "processed"
        assert [(r.action, r.status, r.params, r.detail) for r in runs] == [
            (
                "trigger_flow",
                "skipped",
                {"flow": "billet_reminder"},
                "product curso sends no 'billet_reminder' flow (flows: billet_reminder: none)",
            )
        ]
        assert runs[0].finished_at is not None
        assert event.plans[0]["steps"] == [
            {
                "action": "trigger_flow",
                "params": {"flow": "billet_reminder"},
                "skipped": "product curso sends no 'billet_reminder' flow (flows: billet_reminder: none)",
            }
        ]
    assert h.manychat.calls == []
