"""`engine retry` / `POST /admin/events/{id}/retry`: resume a failed event from its failed step, or
replay a needs_attention one that was never planned."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from connectors.base import StepResult
from engine.db.models import Event
from engine.service.retry import RetryRefused, retry_event, retry_preview
from tests.conftest import RULES, load_payload
from tests.pipeline.test_attention import add_product, deliver, get, history, purchase
from tests.pipeline.test_processing import link


@pytest.fixture
def rules_dir(tmp_path) -> Path:
    target = tmp_path / "rules"
    shutil.copytree(RULES, target)
    return target


def test_admin_retry_refuses_an_event_overtaken_by_a_later_one(make_harness):
    h = make_harness()
    h.deliver(load_payload("purchase_approved.json"))
    h.discord.results["add_role"] = [StepResult.failed("discord.forbidden", "hierarchy")]
    failed_id = link(h)
    h.deliver(load_payload("purchase_refunded.json"))
    with pytest.raises(RetryRefused):
        retry_event(h.runtime, failed_id)
    assert retry_event(h.runtime, failed_id, force=True) == "queued"


def test_retry_of_a_needs_attention_event_replays_it(make_harness, rules_dir):
    h = make_harness(rules_dir=rules_dir)
    event_id = deliver(h, purchase())
    add_product(rules_dir)
    assert retry_event(h.runtime, event_id, actor="admin-api") == "queued"
    assert get(h, Event, event_id).status == "received"
    h.run_queue()
    assert get(h, Event, event_id).status == "processed"
    assert [(e.kind, e.actor) for e in history(h)] == [("replay", "admin-api")]


def test_the_preview_names_the_steps_a_retry_runs_and_changes_nothing(make_harness):
    h = make_harness()
    h.deliver(load_payload("purchase_approved.json"))
    h.discord.results["add_role"] = [StepResult.failed("discord.forbidden", "hierarchy")]
    failed_id = link(h)
    preview = retry_preview(h.runtime, failed_id)
    assert preview.refused is None and not preview.replay
    assert [(step.action, step.status, step.error) for step in preview.steps] == [
        ("add_role", "failed", "discord.forbidden")
    ]
    assert get(h, Event, failed_id).status == "failed" and h.queued == []


def test_the_preview_says_when_a_retry_is_overtaken_or_would_replay(make_harness, rules_dir):
    h = make_harness(rules_dir=rules_dir)
    h.deliver(load_payload("purchase_approved.json"))
    h.discord.results["add_role"] = [StepResult.failed("discord.forbidden", "hierarchy")]
    failed_id = link(h)
    h.deliver(load_payload("purchase_refunded.json"))
    overtaken = retry_preview(h.runtime, failed_id)
    assert overtaken.overtaken and "later event" in overtaken.refused
    assert retry_preview(h.runtime, failed_id, force=True).steps[0].action == "add_role"
    attention = deliver(h, purchase())
    assert retry_preview(h.runtime, attention).replay
    with pytest.raises(LookupError):
        retry_preview(h.runtime, 10**12)


def _failed_link(h) -> int:
    h.deliver(load_payload("purchase_approved.json"))
    h.discord.results["add_role"] = [StepResult.failed("discord.forbidden", "hierarchy")]
    return link(h)


def test_a_resumed_retry_from_the_api_or_the_cli_writes_no_history(make_harness):
    h = make_harness()
    retry_event(h.runtime, _failed_link(h), actor="cli")
    assert history(h) == []


def test_a_retry_from_the_page_is_written_to_the_history_with_its_note(make_harness):
    h = make_harness()
    failed_id = _failed_link(h)
    retry_event(h.runtime, failed_id, actor="admin:ana", note="fixed the role order", audit=True)
    (row,) = history(h)
    assert (row.kind, row.actor, row.event_id) == ("retry", "admin:ana", failed_id)
    assert row.detail == {"previous_status": "failed", "steps": ["#2 add_role"], "note": "fixed the role order"}


def test_a_replay_through_retry_keeps_the_note(make_harness, rules_dir):
    h = make_harness(rules_dir=rules_dir)
    event_id = deliver(h, purchase())
    add_product(rules_dir)
    retry_event(h.runtime, event_id, actor="admin:ana", note="product added", audit=True)
    (row,) = history(h)
    assert (row.kind, row.actor, row.detail["note"]) == ("replay", "admin:ana", "product added")
