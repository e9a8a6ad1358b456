"""A new /registrar code for one membership: the preview the admin page shows (the plan the rules
would make, no code drawn, nothing stored), and the request, written to the history when the page asks."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from engine.db.models import Event, History, OnboardingToken
from engine.service.code_request import code_request_preview, request_code
from tests.conftest import load_payload

pytestmark = pytest.mark.integration

ANA = "ana.exemplo@example.com"


def _count(h, model) -> int:
    with h.runtime.sessions() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_the_preview_is_the_rules_plan_with_no_code_drawn_and_nothing_stored(make_harness):
    h = make_harness()
    h.deliver(load_payload("purchase_approved.json"))
    events, codes = _count(h, Event), _count(h, OnboardingToken)
    plan = code_request_preview(h.runtime, ANA.upper(), "curso")
    assert plan.transition == "code_requested" and plan.from_state == plan.to_state == "pending_onboarding"
    assert [step.action for step in plan.steps] == ["issue_token", "set_field", "trigger_flow"]
    assert plan.steps[1].params["value"] == "{token}"
    assert (_count(h, Event), _count(h, OnboardingToken), h.queued) == (events, codes, [])


def test_the_preview_says_when_the_rules_would_ignore_it(make_harness):
    h = make_harness()
    h.deliver(load_payload("purchase_approved.json"))
    h.deliver(load_payload("purchase_refunded.json"))
    plan = code_request_preview(h.runtime, ANA, "curso")
    assert plan.ignored and plan.steps == []
    with pytest.raises(LookupError):
        code_request_preview(h.runtime, ANA, "combo")  # no such membership
    with pytest.raises(LookupError):
        code_request_preview(h.runtime, "nobody@example.com", "curso")


def test_a_request_is_written_to_the_history_only_when_an_actor_asks(make_harness):
    h = make_harness()
    h.deliver(load_payload("purchase_approved.json"))
    request_code(h.runtime, ANA, "curso")  # the API and the CLI: the event is the record
    asked = request_code(h.runtime, ANA, "curso", actor="admin:ana", note="new phone")
    with h.runtime.sessions() as session:
        rows = session.scalars(select(History)).all()
    assert [(row.kind, row.actor, row.event_id, row.detail) for row in rows] == [
        ("code_requested", "admin:ana", asked, {"product": "curso", "note": "new phone"})
    ]
    assert h.queued[-1] == asked
