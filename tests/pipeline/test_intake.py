"""POST /webhooks/hotmart on the real PostgreSQL: every known payload is taken, stored whole
and then processed or ignored with a reason."""

from __future__ import annotations

import json
import threading

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from engine.api.app import create_app
from engine.db.models import ActionRun, Event, Membership, OnboardingToken
from engine.sources.hotmart.hottok import scrub_payload
from tests.conftest import CORPUS, HOTTOK, REFERENCE

PAYLOADS = sorted(REFERENCE.glob("*.json")) + sorted(CORPUS.glob("*.json"))


@pytest.fixture
def harness(make_harness):
    return make_harness()


@pytest.fixture
def client(harness):
    return TestClient(create_app(harness.runtime))


def post(client: TestClient, body: bytes, token: str | None = HOTTOK):
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["X-HOTMART-HOTTOK"] = token
    return client.post("/webhooks/hotmart", content=body, headers=headers)


def test_every_reference_and_corpus_payload_is_stored_and_decided(client, harness):
    assert len(PAYLOADS) == 17 + 87
    for path in PAYLOADS:
        body = path.read_bytes()
        response = post(client, body)
        assert response.status_code == 200, path.name
        assert response.json()["status"] in ("accepted", "duplicate"), path.name
    harness.run_queue()
    with harness.runtime.sessions() as session:
        events = session.scalars(select(Event)).all()
        # Some corpus files share an envelope id with another: they are redeliveries.
        ids = {json.loads(p.read_bytes()).get("id") for p in PAYLOADS}
        assert len(events) == len(ids)
        for event in events:
            assert event.status in ("processed", "ignored", "needs_attention"), (event.id, event.status, event.reason)
            if event.status == "ignored":
                assert event.reason, event.id
            if event.status == "needs_attention":  # a product the shipped rules do not sell
                assert event.reason.startswith("no product matches id "), (event.id, event.reason)
            original = next(p for p in PAYLOADS if json.loads(p.read_bytes()).get("id") == event.payload.get("id"))
            # Stored whole, but for a body hottok (never at rest).
            assert event.payload == scrub_payload(json.loads(original.read_bytes()))


def test_hottok_is_required_and_never_stored(client, harness):
    body = (REFERENCE / "purchase_approved.json").read_bytes()
    assert post(client, body, token=None).status_code == 401
    assert post(client, body, token="wrong").status_code == 401
    # The body field is the documented fallback.
    with_body_token = json.dumps({**json.loads(body), "hottok": HOTTOK}).encode()
    assert post(client, with_body_token, token=None).status_code == 200
    with harness.runtime.sessions() as session:
        event = session.scalars(select(Event)).one()
        assert "x-hotmart-hottok" not in event.headers
        assert HOTTOK not in json.dumps(event.headers)


def test_non_json_body_is_rejected_and_kept(client, harness):
    response = post(client, b"<xml>nope</xml>")
    assert response.status_code == 400
    with harness.runtime.sessions() as session:
        event = session.scalars(select(Event)).one()
        assert (event.status, event.reason, event.raw_body) == ("rejected", "body is not JSON", "<xml>nope</xml>")


def test_oversized_body_gets_413(client):
    body = b'{"x": "' + b"a" * (300 * 1024) + b'"}'
    assert post(client, body).status_code == 413


@pytest.mark.parametrize("body", [b"[]", b'"text"', b"null", b"42", b'{"event": 5}'])
def test_odd_json_is_accepted_then_ignored_with_a_reason(client, harness, body):
    assert post(client, body).status_code == 200
    harness.run_queue()
    with harness.runtime.sessions() as session:
        event = session.scalars(select(Event)).one()
        assert event.status == "ignored" and event.reason


def test_unknown_product_needs_attention_with_the_reason(client, harness):
    payload = json.loads((REFERENCE / "purchase_approved.json").read_bytes())
    payload["data"]["product"]["id"] = 9999999
    assert post(client, json.dumps(payload).encode()).json()["status"] == "accepted"
    harness.run_queue()
    with harness.runtime.sessions() as session:
        event = session.scalars(select(Event)).one()
        assert (event.status, event.reason) == ("needs_attention", "no product matches id 9999999")


def test_same_body_three_times_concurrently_is_one_event_and_one_plan(client, harness):
    body = (REFERENCE / "purchase_approved.json").read_bytes()
    barrier = threading.Barrier(3)
    answers: list[str] = []

    def deliver() -> None:
        barrier.wait()
        answers.append(post(client, body).json()["status"])

    threads = [threading.Thread(target=deliver) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == ["accepted", "duplicate", "duplicate"]
    harness.run_queue()
    harness.queued.extend([1, 1])  # a redelivered task changes nothing either
    harness.run_queue()
    with harness.runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 1
        flows = session.scalars(select(ActionRun).where(ActionRun.action == "trigger_flow")).all()
        assert len(flows) == 1
    assert harness.manychat.actions_called().count("trigger_flow") == 1


def test_hotmart_disabled_holds_then_releases_in_creation_order(make_harness):
    from engine.pipeline.sweep import release_held

    held = make_harness(hotmart_enabled=False)
    client = TestClient(create_app(held.runtime))
    refund = (REFERENCE / "purchase_refunded.json").read_bytes()
    approval = (REFERENCE / "purchase_approved.json").read_bytes()
    assert post(client, refund).status_code == 200  # arrives first, created later
    assert post(client, approval).status_code == 200
    assert held.queued == []
    with held.runtime.sessions() as session:
        assert [e.status for e in session.scalars(select(Event))] == ["held", "held"]
    held.runtime.settings.hotmart_enabled = True
    released = release_held(held.runtime)
    assert released == [2, 1]  # approval (older creation_date) first
    held.run_queue()
    with held.runtime.sessions() as session:
        events = {e.type: e for e in session.scalars(select(Event))}
        # Applied in creation order (approved, then refunded), planned together: the refund was
        # known when the approval was planned, so no code and no onboarding flow went out.
        assert events["PURCHASE_APPROVED"].status == "processed"
        assert events["PURCHASE_APPROVED"].plans[0]["superseded_by"] == events["PURCHASE_REFUNDED"].id
        assert events["PURCHASE_REFUNDED"].status == "processed"
        assert session.scalars(select(Membership.state)).all() == ["refunded"]
        assert session.scalars(select(OnboardingToken)).all() == []
    flows = [step.params["flow"] for step, _ in held.manychat.calls if step.action == "trigger_flow"]
    assert flows == ["refund"] and held.discord.calls == []


def test_released_held_events_run_in_creation_order(make_harness):
    from engine.pipeline.sweep import release_held

    held = make_harness(hotmart_enabled=False)
    client = TestClient(create_app(held.runtime))
    first = json.loads((REFERENCE / "purchase_approved_subscription_first.json").read_bytes())
    renewal = json.loads((REFERENCE / "purchase_approved_renewal.json").read_bytes())
    assert post(client, json.dumps(renewal).encode()).status_code == 200  # arrives first, created later
    assert post(client, json.dumps(first).encode()).status_code == 200
    held.runtime.settings.hotmart_enabled = True
    assert release_held(held.runtime) == [2, 1]
    held.run_queue()
    with held.runtime.sessions() as session:
        events = {e.id: e for e in session.scalars(select(Event))}
        assert events[2].status == "processed"  # the first charge: onboarding
        assert events[1].status == "processed"  # then the renewal, while onboarding: no new code


def test_deeply_nested_body_is_rejected_not_a_crash(client, harness):
    body = b"[" * 100_000 + b"]" * 100_000
    response = post(client, body[:200_000])
    assert response.status_code == 400
    with harness.runtime.sessions() as session:
        event = session.scalars(select(Event)).one()
        assert (event.status, event.reason) == ("rejected", "body nests too deep")


def test_queue_down_still_acknowledges_and_keeps_the_event(make_harness):
    h = make_harness()

    def queue_down(event_id: int, *, urgent: bool = False) -> None:
        raise ConnectionError("redis is down")

    h.queue.enqueue = queue_down
    client = TestClient(create_app(h.runtime))
    response = post(client, (REFERENCE / "purchase_approved.json").read_bytes())
    assert response.status_code == 200 and response.json()["status"] == "accepted"
    with h.runtime.sessions() as session:
        assert session.scalars(select(Event.status)).one() == "received"
