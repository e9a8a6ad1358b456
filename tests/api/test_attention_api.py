"""The admin API and /healthz for needs_attention, replay and the rules version."""

from __future__ import annotations

import copy
import json
import shutil

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from engine.api.app import create_app
from engine.db.models import Event, History
from engine.pipeline.rules_repository import RulesRepository
from tests.conftest import ADMIN_TOKEN, HOTTOK, RULES, load_payload

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
NEW_PRODUCT = 7777777


@pytest.fixture
def rules_dir(tmp_path):
    target = tmp_path / "rules"
    shutil.copytree(RULES, target)
    return target


def webhook(client: TestClient, envelope: str, product_id: int = NEW_PRODUCT) -> int:
    payload = copy.deepcopy(load_payload("purchase_approved.json"))
    payload["id"] = envelope
    payload["data"]["product"]["id"] = product_id
    response = client.post("/webhooks/hotmart", content=json.dumps(payload), headers={"X-HOTMART-HOTTOK": HOTTOK})
    assert response.json()["status"] == "accepted"
    return response.json()["event_id"]


def test_replay_route_previews_then_queues_needs_attention_events(make_harness, rules_dir):
    h = make_harness(rules_dir=rules_dir)
    client = TestClient(create_app(h.runtime))
    event_id = webhook(client, "api-replay-1")
    h.run_queue()
    detail = client.get(f"/admin/events/{event_id}", headers=AUTH).json()
    assert (detail["status"], detail["rules_version"], detail["failures"]) == (
        "needs_attention",
        h.runtime.rules.version,
        0,
    )
    [alert] = detail["alerts"]
    assert (alert["kind"], alert["count"], alert["group_key"]) == (
        "rules.unknown_product",
        1,
        f"rules.unknown_product:{NEW_PRODUCT}",
    )
    listed = client.get("/admin/events", params={"status": "needs_attention"}, headers=AUTH).json()
    assert [item["id"] for item in listed["items"]] == [event_id]

    text = (rules_dir / "products" / "curso.yaml").read_text()
    (rules_dir / "products" / "mentoria.yaml").write_text(
        text.replace("key: curso", "key: mentoria").replace("[1111111]", f"[{NEW_PRODUCT}]")
    )
    dry = client.post("/admin/replay", json={"dry_run": True}, headers=AUTH)
    assert dry.status_code == 202, dry.text
    body = dry.json()
    assert (body["dry_run"], body["count"], body["summary"]) == (True, 1, {"processed": 1})
    assert body["rules_version"] == h.runtime.rules.version != detail["rules_version"]
    assert (
        h.queued == [] and client.get(f"/admin/events/{event_id}", headers=AUTH).json()["status"] == "needs_attention"
    )

    done = client.post("/admin/replay", json={"type": "purchase_approved"}, headers=AUTH).json()
    assert (done["count"], done["summary"], h.queued) == (1, {"received": 1}, [event_id])
    h.run_queue()
    detail = client.get(f"/admin/events/{event_id}", headers=AUTH).json()
    assert (detail["status"], detail["product"], detail["rules_version"]) == (
        "processed",
        "mentoria",
        done["rules_version"],
    )
    with h.runtime.sessions() as session:
        [entry] = session.scalars(select(History)).all()
        assert (entry.kind, entry.actor, entry.event_id) == ("replay", "admin-api", event_id)


def reconcile_event(h) -> int:
    """A RECONCILE event as a reconcile run queues it (ana's course role granted), run to the end."""
    from engine.db.models import Membership, Student
    from engine.reconcile import apply_access_diff
    from engine.reconcile.diff import AccessDiff, Change

    h.deliver(load_payload("purchase_approved.json"))
    with h.runtime.sessions() as session:
        student = session.scalar(select(Student))
        membership = session.scalar(select(Membership).where(Membership.student_id == student.id))
        change = Change(student.id, student.email, membership.id, membership.product_key, "discord_role", "1")
    [event_id] = apply_access_diff(h.runtime, AccessDiff(grants=[change], students=1)).events
    assert h.run_queue() == ["processed"]
    return event_id


def test_the_replay_route_refuses_a_reconcile_event_and_says_what_to_do_instead(make_harness):
    h = make_harness()
    client = TestClient(create_app(h.runtime))
    event_id = reconcile_event(h)
    for dry_run in (True, False):
        response = client.post(
            "/admin/replay", json={"status": None, "event_ids": [event_id], "dry_run": dry_run}, headers=AUTH
        )
        assert response.status_code == 202, response.text
        body = response.json()
        assert body["summary"] == {"refused": 1}
        [item] = body["items"]
        assert (item["type"], item["before"], item["after"], item["refused"]) == (
            "RECONCILE",
            "processed",
            "processed",
            True,
        )
        assert item["reason"] == (
            f"event {event_id} is a reconcile run's steps, not a rules decision: "
            f"`engine retry {event_id}` resumes its failed steps, `engine reconcile` compares again"
        )
    assert h.queued == []
    with h.runtime.sessions() as session:
        assert session.scalars(select(History).where(History.kind == "replay")).all() == []


def test_retry_route_replays_a_needs_attention_event(make_harness):
    h = make_harness()
    client = TestClient(create_app(h.runtime))
    event_id = webhook(client, "api-retry-1")
    h.run_queue()
    response = client.post(f"/admin/events/{event_id}/retry", headers=AUTH)
    assert (response.status_code, h.queued) == (202, [event_id])
    h.run_queue()
    with h.runtime.sessions() as session:
        assert session.get(Event, event_id).status == "needs_attention"  # still unknown: same verdict
        assert [e.actor for e in session.scalars(select(History))] == ["admin-api"]


def test_healthz_is_degraded_but_200_with_invalid_rules(make_harness, rules_dir):
    h = make_harness(rules_dir=rules_dir)
    client = TestClient(create_app(h.runtime))
    version = h.runtime.rules.version
    assert client.get("/healthz").json() == {
        "status": "ok",
        "database": "ok",
        "rules_version": version,
        "rules_error": None,
        "stuck": None,
    }
    (rules_dir / "onboarding.yaml").write_text("onboarding: [\n")
    h.runtime.rules.reload_if_changed()
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "degraded",
        "database": "ok",
        "rules_version": version,  # the last valid version keeps running
        "rules_error": response.json()["rules_error"],
        "stuck": None,
    }
    assert response.json()["rules_error"].startswith("rules/onboarding.yaml:2: invalid YAML")


def test_without_valid_rules_webhooks_are_still_stored_and_replay_is_refused(make_harness, rules_dir):
    h = make_harness()
    (rules_dir / "lifecycle.yaml").unlink()
    h.runtime.rules = RulesRepository(rules_dir, strict=False)
    client = TestClient(create_app(h.runtime))
    health = client.get("/healthz").json()
    assert (health["status"], health["rules_version"]) == ("degraded", None)
    assert "no lifecycle file" in health["rules_error"]
    event_id = webhook(client, "no-rules-1", product_id=1111111)
    assert h.queued == [event_id]
    response = client.post("/admin/replay", headers=AUTH)
    assert response.status_code == 409 and "rules cannot be loaded" in response.json()["detail"]
    doctor = client.get("/admin/doctor", headers=AUTH)
    assert doctor.status_code == 200 and doctor.json()["ok"] is False  # a failed check, not a 500
