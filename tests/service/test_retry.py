"""`engine retry` / `POST /admin/events/{id}/retry`: resume a failed event from its failed step, or
replay a needs_attention one that was never planned."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from connectors.base import StepResult
from engine.db.models import Event
from engine.service.retry import RetryRefused, retry_event
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
