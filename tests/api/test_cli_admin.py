"""``engine events`` and ``engine retry`` run in this process (tests/cli.py), on the real PostgreSQL."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from connectors.base import StepResult
from engine.api.app import create_app
from engine.db.models import ActionRun, Event
from engine.settings import get_settings
from tests.api.test_admin import ANA, BIA, accepted, post_webhook, purchase
from tests.cli import Ran, run_engine
from tests.conftest import HOTTOK, RULES


@pytest.fixture
def cli_env(pg: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    env = {
        "DATABASE_URL": pg,
        "ENGINE_ENV": "test",
        "RULES_DIR": str(RULES),
        "VAR_DIR": str(tmp_path),  # the embedded queue, if engine.worker is first imported here
        "HOTMART_HOTTOK": HOTTOK,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("REDIS_URL", raising=False)
    get_settings.cache_clear()
    yield env
    get_settings.cache_clear()


@pytest.fixture
def enqueued(cli_env, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """What ``engine retry`` hands to the worker's queue."""
    import engine.worker
    from engine.pipeline.queue import MemoryQueue

    queue = MemoryQueue()
    monkeypatch.setattr(engine.worker, "task_queue", lambda: queue)
    return queue.events


def engine(env: dict[str, str], *args: str) -> Ran:
    return run_engine({**os.environ, **env}, *args)


@pytest.fixture
def seeded(make_harness, cli_env):
    """ana's purchase fails on a bad tag (alert), bia's is processed, one body is rejected."""
    h = make_harness()
    client = TestClient(create_app(h.runtime))
    h.manychat.results["add_tag"] = [StepResult.failed("manychat.unknown_tag", "tag aluno-curso does not exist")]
    failed = accepted(client, purchase(ANA, envelope="cli-1"))
    processed = accepted(client, purchase(BIA, envelope="cli-2"))
    assert post_webhook(client, b"not json").status_code == 400
    assert h.run_queue() == ["failed", "processed"]
    return h, failed, processed


def test_events_json_lists_the_log(seeded, cli_env):
    h, failed, processed = seeded
    result = engine(cli_env, "events", "--json")
    assert result.returncode == 0, result.output
    page = json.loads(result.stdout)
    assert (page["total"], page["limit"], page["offset"]) == (3, 50, 0)
    rejected, bia, ana = page["items"]
    assert (ana["id"], ana["status"], ana["type"], ana["email"], ana["product"]) == (
        failed,
        "failed",
        "PURCHASE_APPROVED",
        ANA,
        "curso",
    )
    assert ana["reason"] == "step 1 (add_tag) failed: manychat.unknown_tag"
    assert (bia["id"], bia["status"]) == (processed, "processed")
    assert (rejected["status"], rejected["reason"]) == ("rejected", "body is not JSON")

    only_failed = json.loads(engine(cli_env, "events", "--json", "--status", "failed").stdout)
    assert [item["id"] for item in only_failed["items"]] == [failed]
    by_email = json.loads(engine(cli_env, "events", "--json", "--email", BIA.upper()).stdout)
    assert [item["id"] for item in by_email["items"]] == [processed]
    by_type = json.loads(engine(cli_env, "events", "--json", "--type", "purchase_approved", "--limit", "1").stdout)
    assert (by_type["total"], [item["id"] for item in by_type["items"]]) == (2, [processed])

    bad = engine(cli_env, "events", "--status", "bogus")
    assert bad.returncode == 2
    assert "bogus" in bad.stderr


def test_events_prints_a_table(seeded, cli_env):
    h, failed, processed = seeded
    result = engine(cli_env, "events", "--status", "failed")
    assert result.returncode == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "RECEIVED", "TYPE", "STATUS", "EMAIL", "PRODUCT", "REASON"]
    row = lines[1].split()
    assert row[0] == str(failed)
    assert row[3:7] == ["PURCHASE_APPROVED", "failed", ANA, "curso"]
    assert "step 1 (add_tag) failed: manychat.unknown_tag" in lines[1]
    assert lines[-1] == "1 of 1 event(s)"


def test_retry_queues_a_failed_event_and_refuses_the_rest(seeded, cli_env, enqueued):
    h, failed, processed = seeded
    result = engine(cli_env, "retry", str(failed))
    assert result.returncode == 0, result.output
    assert result.stdout.strip() == f"event {failed}: queued"
    assert enqueued == [failed]
    with h.runtime.sessions() as session:
        assert session.get(Event, failed).status == "processing"
        add_tag = session.scalar(select(ActionRun).where(ActionRun.event_id == failed, ActionRun.action == "add_tag"))
        assert (add_tag.status, add_tag.attempts) == ("pending", 0)

    h.queued.append(failed)  # what the worker would do with the queued id
    assert h.run_queue() == ["processed"]

    again = engine(cli_env, "retry", str(failed))
    assert again.returncode == 1
    assert again.stderr.strip() == "error: event is processed: nothing to retry"
    missing = engine(cli_env, "retry", "987654")
    assert missing.returncode == 1
    assert missing.stderr.strip() == "error: event 987654 not found"
    assert enqueued == [failed]


def test_replay_of_a_reconcile_event_is_refused_with_what_to_do_instead(make_harness, cli_env, enqueued):
    from tests.api.test_attention_api import reconcile_event

    h = make_harness()
    event_id = reconcile_event(h)
    reason = (
        f"event {event_id} is a reconcile run's steps, not a rules decision: "
        f"`engine retry {event_id}` resumes its failed steps, `engine reconcile` compares again"
    )
    for dry in ([], ["--dry-run"]):
        result = engine(cli_env, "replay", str(event_id), *dry)
        assert result.returncode == 0, result.output
        line, summary = result.stdout.splitlines()
        assert line == f"event {event_id} RECONCILE: processed, not replayed: {reason}"
        assert summary.endswith(": 1 refused")
    as_json = json.loads(engine(cli_env, "replay", str(event_id), "--json").stdout)
    assert as_json["summary"] == {"refused": 1} and as_json["items"][0]["refused"] is True
    assert enqueued == []
    with h.runtime.sessions() as session:
        assert session.get(Event, event_id).status == "processed"


def test_retry_of_an_overtaken_event_needs_force(seeded, cli_env, enqueued):
    h, failed, processed = seeded
    client = TestClient(create_app(h.runtime))
    refund = purchase(ANA, envelope="cli-3", name="purchase_refunded.json")
    accepted(client, refund)
    assert h.run_queue() == ["processed"]

    refused = engine(cli_env, "retry", str(failed))
    assert refused.returncode == 1
    assert "a later event changed this membership" in refused.stderr
    assert "(pass --force to run the remaining steps anyway)" in refused.stderr  # the real flag
    assert enqueued == []
    forced = engine(cli_env, "retry", str(failed), "--force")
    assert forced.returncode == 0, forced.output
    assert enqueued == [failed]
