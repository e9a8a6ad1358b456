"""The admin API on the real PostgreSQL, seeded through the real webhook and pipeline."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select, update

from connectors.base import StepResult
from engine.api.app import create_app
from engine.db.models import Alert, Event, OnboardingToken, Student
from engine.onboarding.linking import LinkService
from engine.pipeline.execution import drain_student
from engine.pipeline.locks import student_lock
from tests.conftest import ADMIN_TOKEN, HOTTOK, load_payload, rewriting_event_log

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ANA = "ana.exemplo@example.com"
BIA = "bia.teste@example.com"
CURSO_ID, COMUNIDADE_ID = 1111111, 2222222
DISCORD_BIA = "300000000000000042"


# --- helpers --------------------------------------------------------------------------


def purchase(
    email: str = ANA,
    *,
    envelope: str,
    product_id: int = CURSO_ID,
    name: str = "purchase_approved.json",
    **top: Any,
) -> dict[str, Any]:
    """A reference payload for another buyer / product, with its own envelope id."""
    body = copy.deepcopy(load_payload(name))
    body["id"] = envelope
    body["data"]["buyer"]["email"] = email
    body["data"]["product"]["id"] = product_id
    body.update(top)
    return body


def post_webhook(client: TestClient, body: dict | bytes, *, token: str | None = HOTTOK):
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["X-HOTMART-HOTTOK"] = token
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post("/webhooks/hotmart", content=content, headers=headers)


def accepted(client: TestClient, body: dict) -> int:
    response = post_webhook(client, body)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "accepted"
    return response.json()["event_id"]


def get(client: TestClient, path: str, **params: Any) -> Any:
    response = client.get(path, params=params, headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()


def ids(page: dict) -> list[int]:
    return [item["id"] for item in page["items"]]


def student_id(h, email: str) -> int:
    with h.runtime.sessions() as session:
        return session.scalar(select(Student.id).where(Student.email == email))


def open_code(h, email: str) -> str:
    with h.runtime.sessions() as session:
        return session.scalar(
            select(OnboardingToken.code)
            .join(Student, Student.id == OnboardingToken.student_id)
            .where(Student.email == email, OnboardingToken.used_at.is_(None), OnboardingToken.revoked_at.is_(None))
        )


def fail_add_tag_twice(h) -> int:
    """ana buys the course; add_tag fails, is retried once after the delay, fails again."""
    h.manychat.results["add_tag"] = [
        StepResult.failed("manychat.unavailable", retryable=True),
        StepResult.failed("manychat.unavailable", retryable=True),
    ]
    client = TestClient(create_app(h.runtime))
    event_id = accepted(client, purchase(envelope="fail-1"))
    assert h.run_queue() == ["retrying"]
    sid = student_id(h, ANA)
    assert h.drains == [(sid, h.runtime.settings.retry_delay_seconds)]
    h.clock.advance(seconds=h.runtime.settings.retry_delay_seconds + 1)
    with student_lock(h.runtime.sessions, sid):
        drain_student(h.runtime, sid)
    return event_id


@pytest.fixture
def h(make_harness):
    return make_harness()


@pytest.fixture
def client(h) -> TestClient:
    return TestClient(create_app(h.runtime))


# --- authentication -------------------------------------------------------------------

ROUTES = [
    ("GET", "/admin/events", "/admin/events", 200),
    ("GET", "/admin/events/{event_id}", "/admin/events/1", 200),
    ("POST", "/admin/events/{event_id}/retry", "/admin/events/1/retry", 202),
    ("GET", "/admin/students", "/admin/students", 200),
    ("GET", "/admin/students/{email}", f"/admin/students/{ANA}", 200),
    ("GET", "/admin/alerts", "/admin/alerts", 200),
    ("POST", "/admin/alerts/{alert_id}/ack", "/admin/alerts/1/ack", 200),
    ("POST", "/admin/students/{email}/code", f"/admin/students/{ANA}/code?product=curso", 202),
    ("POST", "/admin/replay", "/admin/replay", 202),
    ("GET", "/admin/doctor", "/admin/doctor", 200),
    ("GET", "/admin/reconcile/runs", "/admin/reconcile/runs", 200),
    ("GET", "/admin/sync/hotmart/runs", "/admin/sync/hotmart/runs", 200),
]
BAD_CREDENTIALS = {
    "missing": {},
    "wrong token": {"Authorization": "Bearer not-the-admin-token"},
    "hottok instead": {"Authorization": f"Bearer {HOTTOK}"},
    "wrong scheme": {"Authorization": f"Basic {ADMIN_TOKEN}"},
    "empty bearer": {"Authorization": "Bearer "},
}


def test_the_route_table_covers_every_admin_route(h):
    spec = create_app(h.runtime).openapi()
    declared = {
        (method.upper(), path)
        for path, operations in spec["paths"].items()
        if path.startswith("/admin")
        for method in operations
    }
    assert declared == {(method, template) for method, template, _, _ in ROUTES}


def fail_add_tag(h) -> None:
    """Event 1 failed on a tag ManyChat does not have, alert 1 says so: something for every route to act on."""
    h.manychat.results["add_tag"] = [StepResult.failed("manychat.unknown_tag", "tag aluno-curso does not exist")]
    assert accepted(TestClient(create_app(h.runtime)), purchase(envelope="fail-1")) == 1
    assert h.run_queue() == ["failed"]
    with h.runtime.sessions() as session:
        assert session.get(Alert, 1) is not None


def test_every_admin_route_refuses_without_the_token(h, client, subtests):
    # Dozens of wrong tokens from one address: the lockout (tested in tests/web) would answer 429.
    h.runtime.settings = h.runtime.settings.model_copy(update={"login_max_failures": 10_000})
    fail_add_tag(h)  # once: a refused request changes nothing, which is what each route is checked for
    for method, template, path, _ in ROUTES:
        for name, credentials in BAD_CREDENTIALS.items():
            with subtests.test(route=f"{method} {template}", credentials=name):
                response = client.request(method, path, headers=credentials)
                assert response.status_code == 401
                assert response.headers["www-authenticate"] == "Bearer"
                assert ADMIN_TOKEN not in response.text
                with h.runtime.sessions() as session:  # refused means nothing happened
                    assert session.get(Event, 1).status == "failed"
                    assert session.get(Alert, 1).acknowledged_at is None


@pytest.mark.parametrize(("method", "template", "path", "ok"), ROUTES, ids=[f"{m} {t}" for m, t, _, _ in ROUTES])
def test_every_admin_route_answers_with_the_token(h, client, method, template, path, ok):
    fail_add_tag(h)
    response = client.request(method, path, headers=AUTH)
    assert response.status_code == ok, response.text
    assert response.headers["content-type"] == "application/json"


def test_an_unconfigured_admin_token_refuses_everyone(h):
    h.runtime.settings = h.runtime.settings.model_copy(update={"admin_api_token": SecretStr("")})
    client = TestClient(create_app(h.runtime))
    assert client.get("/admin/events", headers={"Authorization": "Bearer "}).status_code == 401
    assert client.get("/admin/events", headers=AUTH).status_code == 401


# --- the webhook, seen through the admin API ------------------------------------------


def test_webhook_intake_outcomes_are_visible_in_the_event_log(h, client):
    body = purchase(envelope="intake-1")
    unauthenticated = post_webhook(client, body, token=None)
    assert unauthenticated.status_code == 401
    assert post_webhook(client, body, token="wrong").status_code == 401
    assert get(client, "/admin/events")["total"] == 0  # nothing stored

    not_json = post_webhook(client, b"hottok=abc&prod=1111111")
    assert not_json.status_code == 400
    event_id = accepted(client, body)
    assert post_webhook(client, body).json() == {"status": "duplicate"}
    assert h.run_queue() == ["processed"]

    page = get(client, "/admin/events")
    assert page["total"] == 2
    processed, rejected = page["items"]  # newest first: the body was rejected before
    assert processed["id"] == event_id
    assert (processed["status"], processed["type"], processed["email"], processed["product"]) == (
        "processed",
        "PURCHASE_APPROVED",
        ANA,
        "curso",
    )
    assert rejected["status"] == "rejected"
    assert rejected["reason"] == "body is not JSON"
    detail = get(client, f"/admin/events/{rejected['id']}")
    assert detail["payload"] is None
    assert detail["raw_body"] == "hottok=[redacted]&prod=1111111"  # a form body's hottok is hidden too
    assert get(client, "/admin/events", status="rejected")["total"] == 1


# --- events ---------------------------------------------------------------------------


@pytest.fixture
def seeded(h, client) -> dict[str, int]:
    """ana buys the course, bia the community, a club event for ana is ignored, a body is rejected."""
    events = {
        "ana_curso": accepted(client, purchase(ANA, envelope="seed-1")),
        "bia_comunidade": accepted(
            client,
            purchase(
                BIA, envelope="seed-2", product_id=COMUNIDADE_ID, name="purchase_approved_subscription_first.json"
            ),
        ),
        "ana_club": accepted(client, {**load_payload("club_first_access.json"), "id": "seed-3"}),
    }
    assert post_webhook(client, b"{not json").status_code == 400
    assert h.run_queue() == ["processed", "processed", "ignored"]
    with h.runtime.sessions() as session:
        events["rejected"] = session.scalar(select(Event.id).where(Event.status == "rejected"))
    return events


def test_events_are_listed_newest_first_and_filtered(h, client, seeded):
    everything = get(client, "/admin/events")
    assert everything["total"] == 4
    assert (everything["limit"], everything["offset"]) == (50, 0)
    assert ids(everything) == sorted(seeded.values(), reverse=True)

    assert ids(get(client, "/admin/events", status="processed")) == [seeded["bia_comunidade"], seeded["ana_curso"]]
    ignored = get(client, "/admin/events", status="ignored")
    assert ids(ignored) == [seeded["ana_club"]]
    assert ignored["items"][0]["reason"] == "comunidade: engagement event; no access change"
    assert get(client, "/admin/events", status="failed")["total"] == 0

    by_type = get(client, "/admin/events", type="purchase_approved")  # case-insensitive
    assert ids(by_type) == [seeded["bia_comunidade"], seeded["ana_curso"]]
    assert ids(get(client, "/admin/events", type="CLUB_FIRST_ACCESS")) == [seeded["ana_club"]]

    ana = get(client, "/admin/events", email="  ANA.Exemplo@Example.COM ")
    assert ids(ana) == [seeded["ana_club"], seeded["ana_curso"]]
    assert ids(get(client, "/admin/events", email=BIA, status="processed")) == [seeded["bia_comunidade"]]
    assert get(client, "/admin/events", email="nobody@example.com")["total"] == 0

    for bad in ({"status": "bogus"}, {"limit": 0}, {"limit": 501}, {"offset": -1}, {"since": "yesterday"}):
        assert client.get("/admin/events", params=bad, headers=AUTH).status_code == 422, bad


def test_events_filter_on_received_dates(h, client, seeded):
    received = {
        seeded["ana_curso"]: datetime(2026, 3, 1, 10, tzinfo=UTC),
        seeded["bia_comunidade"]: datetime(2026, 3, 2, 10, tzinfo=UTC),
        seeded["ana_club"]: datetime(2026, 3, 3, 10, tzinfo=UTC),
        seeded["rejected"]: datetime(2026, 3, 4, 10, tzinfo=UTC),
    }
    with h.runtime.sessions.begin() as session, rewriting_event_log(session):
        for event_id, at in received.items():
            session.execute(update(Event).where(Event.id == event_id).values(received_at=at))

    since = get(client, "/admin/events", since="2026-03-02T10:00:00Z")  # inclusive
    assert ids(since) == [seeded["rejected"], seeded["ana_club"], seeded["bia_comunidade"]]
    until = get(client, "/admin/events", until="2026-03-03T10:00:00+00:00")  # exclusive
    assert ids(until) == [seeded["bia_comunidade"], seeded["ana_curso"]]
    window = get(client, "/admin/events", since="2026-03-02T00:00:00", until="2026-03-04T00:00:00")  # naive = UTC
    assert ids(window) == [seeded["ana_club"], seeded["bia_comunidade"]]
    # 12:00 at UTC+3 is 09:00 UTC: the event of 10:00 UTC that day is inside.
    assert ids(get(client, "/admin/events", since="2026-03-03T12:00:00+03:00", until="2026-03-03T13:01:00+03:00")) == [
        seeded["ana_club"]
    ]
    assert get(client, "/admin/events", since="2026-03-05T00:00:00Z")["total"] == 0
    item = get(client, "/admin/events", status="ignored")["items"][0]
    assert item["received_at"] == "2026-03-03T10:00:00Z"


def test_events_pagination_keeps_the_total(h, client):
    created = [accepted(client, purchase(f"aluno{i}@example.com", envelope=f"page-{i}")) for i in range(7)]
    h.run_queue()
    newest_first = sorted(created, reverse=True)
    pages = [get(client, "/admin/events", limit=3, offset=offset) for offset in (0, 3, 6, 9)]
    assert [page["total"] for page in pages] == [7, 7, 7, 7]
    assert [(page["limit"], page["offset"]) for page in pages] == [(3, 0), (3, 3), (3, 6), (3, 9)]
    assert [ids(page) for page in pages] == [newest_first[:3], newest_first[3:6], newest_first[6:], []]
    assert get(client, "/admin/events", limit=500)["total"] == 7


def test_event_detail_has_the_steps_and_no_secret(h, client):
    # Some Hotmart payloads carry the hottok in the body too (an old one, after a rotation).
    body = purchase(envelope="detail-1", hottok="rotated-old-hottok")
    event_id = accepted(client, body)
    assert h.run_queue() == ["processed"]
    code = open_code(h, ANA)
    assert code

    response = client.get(f"/admin/events/{event_id}", headers=AUTH)
    assert response.status_code == 200
    detail = response.json()
    for secret in (HOTTOK, "rotated-old-hottok", ADMIN_TOKEN, code):
        assert secret not in response.text

    with h.runtime.sessions() as session:
        event = session.get(Event, event_id)
        assert detail["correlation_id"] == event.correlation_id
        assert detail["dedupe_key"] == "hotmart:detail-1"
    assert (detail["status"], detail["type"], detail["product"], detail["reason"]) == (
        "processed",
        "PURCHASE_APPROVED",
        "curso",
        None,
    )
    assert detail["payload"]["hottok"] == "[redacted]"
    assert detail["payload"]["data"]["purchase"]["transaction"] == "HP10000000000001"  # the rest is whole
    assert "x-hotmart-hottok" not in detail["headers"]
    assert detail["headers"]["content-type"] == "application/json"
    assert detail["plans"][0]["transition"] == "purchase_not_linked"
    assert detail["plans"][0]["to_state"] == "pending_onboarding"

    steps = detail["steps"]
    assert [s["action"] for s in steps] == [
        "issue_token",
        "add_tag",
        "set_field",
        "trigger_flow",
        "schedule",
        "schedule",
    ]
    assert [s["step_index"] for s in steps] == list(range(6))
    assert all(s["status"] == "done" and s["attempts"] == 1 and s["error"] is None for s in steps)
    assert all(s["started_at"] and s["finished_at"] for s in steps)
    assert steps[0]["params"]["code"] == "[redacted]"
    assert steps[1]["params"]["tags"] == ["aluno-curso"]
    assert steps[2]["params"] == {"field": "codigo_discord", "value": "[redacted]"}
    assert steps[3]["params"]["flow"] == "onboarding"
    assert steps[4]["params"]["event"] == "ONBOARDING_REMINDER"
    assert steps[1]["result"]["retryable"] is False
    assert detail["alerts"] == []

    missing = client.get("/admin/events/999999", headers=AUTH)
    assert missing.status_code == 404
    assert client.get("/admin/events/abc", headers=AUTH).status_code == 422


# --- retry and alerts -----------------------------------------------------------------


def test_a_failed_step_is_retried_by_an_admin(h, client):
    event_id = fail_add_tag_twice(h)

    detail = get(client, f"/admin/events/{event_id}")
    assert detail["status"] == "failed"
    assert detail["reason"] == "step 1 (add_tag) failed: manychat.unavailable"
    by_action = {s["action"]: s for s in detail["steps"]}
    assert by_action["issue_token"]["status"] == "done"
    assert (by_action["add_tag"]["status"], by_action["add_tag"]["attempts"], by_action["add_tag"]["error"]) == (
        "failed",
        2,
        "manychat.unavailable",
    )
    assert by_action["set_field"]["status"] == "pending"  # later steps wait
    [alert] = detail["alerts"]
    assert alert["kind"] == "manychat.unavailable"
    assert alert["action_run_id"] == by_action["add_tag"]["id"]
    assert alert["student_email"] == ANA
    assert f"POST /admin/events/{event_id}/retry" in alert["message"]
    assert get(client, "/admin/events", status="failed")["total"] == 1

    h.queued.clear()
    response = client.post(f"/admin/events/{event_id}/retry", headers=AUTH)
    assert response.status_code == 202
    assert response.json() == {"status": "queued"}
    assert h.queued == [event_id]
    assert h.run_queue() == ["processed"]

    detail = get(client, f"/admin/events/{event_id}")
    assert detail["status"] == "processed"
    assert detail["reason"] is None
    assert all(s["status"] == "done" for s in detail["steps"]), detail["steps"]
    assert {s["action"]: s["attempts"] for s in detail["steps"]}["add_tag"] == 1  # reset, then one run
    assert [s.action for s, _ in h.manychat.calls].count("add_tag") == 3
    assert [s.action for s, _ in h.manychat.calls].count("set_field") == 1  # never ran before, ran once now

    again = client.post(f"/admin/events/{event_id}/retry", headers=AUTH)
    assert again.status_code == 409
    assert again.json()["detail"] == "event is processed: nothing to retry"
    missing = client.post("/admin/events/424242/retry", headers=AUTH)
    assert missing.status_code == 404
    assert missing.json()["detail"] == "event 424242 not found"
    assert h.queued == []


def test_retry_of_an_overtaken_event_needs_force(h, client):
    h.manychat.results["add_tag"] = [StepResult.failed("manychat.unknown_tag", "tag aluno-curso does not exist")]
    failed_id = accepted(client, purchase(envelope="overtaken-1"))
    assert h.run_queue() == ["failed"]
    refund = load_payload("purchase_refunded.json")  # the same purchase, refunded later
    refund["id"] = "overtaken-2"
    accepted(client, refund)
    assert h.run_queue() == ["processed"]

    refused = client.post(f"/admin/events/{failed_id}/retry", headers=AUTH)
    assert refused.status_code == 409
    assert "later event changed this membership" in refused.json()["detail"]
    assert h.queued == []
    assert get(client, f"/admin/events/{failed_id}")["status"] == "failed"

    forced = client.post(f"/admin/events/{failed_id}/retry", params={"force": "true"}, headers=AUTH)
    assert forced.status_code == 202
    assert h.queued == [failed_id]


def test_alerts_are_listed_and_acknowledged(h, client):
    event_id = fail_add_tag_twice(h)
    other = accepted(client, purchase(BIA, envelope="alert-2"))
    h.manychat.results["add_tag"] = [StepResult.failed("manychat.unknown_tag")]
    assert h.run_queue() == ["failed"]

    open_alerts = get(client, "/admin/alerts")
    assert open_alerts["total"] == 2
    newest, oldest = open_alerts["items"]
    assert (newest["event_id"], newest["kind"], newest["student_email"]) == (other, "manychat.unknown_tag", BIA)
    assert (oldest["event_id"], oldest["kind"], oldest["student_email"]) == (event_id, "manychat.unavailable", ANA)
    assert newest["acknowledged_at"] is None
    assert newest["notified"] is None

    h.clock.advance(minutes=5)
    acked = client.post(f"/admin/alerts/{oldest['id']}/ack", headers=AUTH)
    assert acked.status_code == 200
    first_ack = acked.json()["acknowledged_at"]
    assert datetime.fromisoformat(first_ack) == h.clock.now
    h.clock.advance(minutes=5)
    repeat = client.post(f"/admin/alerts/{oldest['id']}/ack", headers=AUTH)
    assert repeat.status_code == 200
    assert repeat.json()["acknowledged_at"] == first_ack  # idempotent: the first time stays

    assert ids(get(client, "/admin/alerts")) == [newest["id"]]
    assert ids(get(client, "/admin/alerts", acknowledged="false")) == [newest["id"]]
    assert ids(get(client, "/admin/alerts", acknowledged="true")) == [oldest["id"]]
    assert ids(get(client, "/admin/alerts", acknowledged="any")) == [newest["id"], oldest["id"]]
    paged = get(client, "/admin/alerts", acknowledged="any", limit=1, offset=1)
    assert (paged["total"], ids(paged)) == (2, [oldest["id"]])
    assert client.get("/admin/alerts", params={"acknowledged": "maybe"}, headers=AUTH).status_code == 422
    assert client.post("/admin/alerts/999999/ack", headers=AUTH).status_code == 404


# --- students -------------------------------------------------------------------------


def link_bia(h) -> None:
    """bia types her code in /registrar (the bot's real linking code) and the link is processed."""
    service = LinkService(h.runtime.sessions, h.runtime.rules, h.queued.append, clock=h.clock)
    outcome = service.link(DISCORD_BIA, open_code(h, BIA))
    assert outcome.linked, outcome
    assert h.run_queue() == ["processed"]


def test_students_list_filters_by_state_product_and_stuck_days(h, client, seeded):
    link_bia(h)
    everyone = get(client, "/admin/students")
    assert everyone["total"] == 2
    by_email = {item["email"]: item for item in everyone["items"]}
    assert [item["email"] for item in everyone["items"]] == [BIA, ANA]  # newest first
    assert by_email[ANA]["discord_id"] is None and by_email[ANA]["discord_linked"] is False
    assert by_email[ANA]["name"] == "Ana Exemplo Souza"
    assert by_email[BIA]["discord_id"] == DISCORD_BIA and by_email[BIA]["discord_linked"] is True
    assert by_email[ANA]["memberships"] == [
        {"product": "curso", "state": "pending_onboarding", "since": "2026-03-02T12:00:00Z"}
    ]
    assert [(m["product"], m["state"]) for m in by_email[BIA]["memberships"]] == [("comunidade", "active")]

    def emails(**params: Any) -> list[str]:
        return [item["email"] for item in get(client, "/admin/students", **params)["items"]]

    assert emails(state="active") == [BIA]
    assert emails(state="pending_onboarding") == [ANA]
    assert emails(state="refunded") == []
    assert emails(product="curso") == [ANA]
    assert emails(product="comunidade", state="active") == [BIA]
    assert emails(product="curso", state="active") == []  # both on the same membership

    assert emails(stuck_days=1) == []  # just bought
    h.clock.advance(days=2)
    assert emails(stuck_days=1) == [ANA]  # bia is active, not stuck
    assert emails(stuck_days=3) == []
    assert emails(stuck_days=1, product="comunidade") == []

    page = get(client, "/admin/students", limit=1, offset=1)
    assert (page["total"], [i["email"] for i in page["items"]]) == (2, [ANA])
    assert client.get("/admin/students", params={"stuck_days": -1}, headers=AUTH).status_code == 422


def test_students_list_searches_as_the_admin_page_does(h, client, seeded):
    link_bia(h)
    by_email = {item["email"]: item for item in get(client, "/admin/students")["items"]}
    assert by_email[ANA]["phone"] == "+5511999990001"

    def emails(**params: Any) -> list[str]:
        return [item["email"] for item in get(client, "/admin/students", **params)["items"]]

    assert emails(q="BIA.TESTE") == [BIA]
    # Both bought with the reference payload's name and phone.
    assert emails(q="EXEMPLO SOUZA") == [BIA, ANA]
    assert emails(q="99999-0001") == [BIA, ANA]
    assert emails(q=DISCORD_BIA) == [BIA]
    assert emails(q="HP10000000000001") == [ANA]
    assert emails(q="HP2000000000000") == []  # a transaction only whole
    assert emails(linked="true") == [BIA]
    assert emails(linked="false") == [ANA]
    assert emails(linked="false", q="bia") == []
    assert emails(q="example.com", product="comunidade") == [BIA]
    for hostile in ({"q": "x" * 201}, {"q": "ana\x07"}, {"linked": "maybe"}):
        assert client.get("/admin/students", params=hostile, headers=AUTH).status_code == 422, hostile


def test_student_detail(h, client, seeded):
    code = open_code(h, ANA)
    response = client.get("/admin/students/Ana.Exemplo@EXAMPLE.com", headers=AUTH)
    assert response.status_code == 200
    ana = response.json()
    assert code not in response.text
    assert HOTTOK not in response.text

    assert (ana["email"], ana["name"], ana["phone"], ana["discord_id"]) == (
        ANA,
        "Ana Exemplo Souza",
        "+5511999990001",
        None,
    )
    [membership] = ana["memberships"]
    assert (membership["product"], membership["state"], membership["transaction"]) == (
        "curso",
        "pending_onboarding",
        "HP10000000000001",
    )
    assert membership["paid_until"] is None and membership["subscriber_code"] is None
    assert membership["since"] == "2026-03-02T12:00:00Z"
    assert membership["last_event_id"] == seeded["ana_curso"]

    assert [(g["product"], g["kind"], g["resource"], g["applied"]) for g in ana["grants"]] == [
        ("curso", "manychat_tag", "aluno-curso", True)
    ]
    now = h.clock.now
    assert [(t["event_type"], t["due_at"], t["product"]) for t in ana["pending_timers"]] == [
        ("ONBOARDING_REMINDER", (now + timedelta(hours=24)).isoformat().replace("+00:00", "Z"), "curso"),
        ("TOKEN_EXPIRED", (now + timedelta(days=7)).isoformat().replace("+00:00", "Z"), "curso"),
    ]
    assert all(t["created_by_event_id"] == seeded["ana_curso"] for t in ana["pending_timers"])
    [open_code_row] = ana["open_codes"]
    assert set(open_code_row) == {"id", "product", "membership_id", "created_at", "expires_at"}
    assert open_code_row["product"] == "curso"
    assert datetime.fromisoformat(open_code_row["expires_at"]) == now + timedelta(days=7)

    assert [(e["id"], e["status"]) for e in ana["history"]] == [
        (seeded["ana_club"], "ignored"),
        (seeded["ana_curso"], "processed"),
    ]
    assert ana["history"][0]["reason"] == "comunidade: engagement event; no access change"
    assert ana["history_total"] == 2
    limited = get(client, f"/admin/students/{ANA}", history_limit=1)
    assert ([e["id"] for e in limited["history"]], limited["history_total"]) == ([seeded["ana_club"]], 2)

    link_bia(h)
    bia = get(client, f"/admin/students/{BIA}")
    assert bia["discord_id"] == DISCORD_BIA and bia["discord_linked"] is True
    assert bia["open_codes"] == []  # used
    assert [m["state"] for m in bia["memberships"]] == ["active"]
    kinds = {(g["kind"], g["resource"]) for g in bia["grants"]}
    assert ("discord_role", "1180000000000000002") in kinds
    assert ("manychat_tag", "assinante") in kinds
    assert bia["history"][0]["type"] == "DISCORD_LINKED"

    assert client.get("/admin/students/nobody@example.com", headers=AUTH).status_code == 404

    # After the code expires it is no longer open (and is never shown anyway).
    h.clock.advance(days=8)
    assert get(client, f"/admin/students/{ANA}")["open_codes"] == []


# --- documentation --------------------------------------------------------------------


def test_openapi_and_docs_list_every_admin_route(client):
    spec = client.get("/openapi.json").json()
    for method, template, _, _ in ROUTES:
        operation = spec["paths"][template][method.lower()]
        assert operation["tags"] == ["admin"]
        assert {"HTTPBearer": []} in operation["security"], template
        assert "401" in operation["responses"]
    assert "EventDetail" in spec["components"]["schemas"]
    assert "StudentDetail" in spec["components"]["schemas"]
    assert "AlertPage" in spec["components"]["schemas"]
    detail = spec["paths"]["/admin/events/{event_id}"]["get"]["responses"]["200"]["content"]["application/json"]
    assert detail["schema"] == {"$ref": "#/components/schemas/EventDetail"}
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "swagger-ui" in docs.text.lower()
    assert "/openapi.json" in docs.text


# --- admin actions: a new code, replaying skipped steps --------------------------------


def test_new_code_request_replaces_the_old_code_and_sends_it(h, client):
    from engine.db.models import OnboardingToken

    post_webhook(client, load_payload("purchase_approved.json"))
    h.run_queue()
    response = client.post(f"/admin/students/{ANA.upper()}/code", params={"product": "curso"}, headers=AUTH)
    assert response.status_code == 202 and response.json()["status"] == "queued"
    h.run_queue()
    with h.runtime.sessions() as session:
        tokens = session.scalars(select(OnboardingToken).order_by(OnboardingToken.id)).all()
    assert len(tokens) == 2 and tokens[0].revoked_at is not None and tokens[1].revoked_at is None
    sent = [s.params for s, _ in h.manychat.calls if s.action in ("set_field", "trigger_flow")]
    assert sent[-2:] == [
        {"field": "codigo_discord", "value": tokens[1].code},
        {"flow": "onboarding", "flow_ns": "content20261101000000_000001"},
    ]
    assert client.post(f"/admin/students/{ANA}/code", params={"product": "combo"}, headers=AUTH).status_code == 404
    assert (
        client.post("/admin/students/nobody@example.com/code", params={"product": "curso"}, headers=AUTH).status_code
        == 404
    )


def test_a_new_code_is_queued_ahead_of_bulk_work(h, client):
    """The admin (and the student) wait for a new code: its event is queued urgent; a purchase's is not."""
    post_webhook(client, load_payload("purchase_approved.json"))
    [purchase] = h.queued
    h.run_queue()
    assert client.post(f"/admin/students/{ANA}/code", params={"product": "curso"}, headers=AUTH).status_code == 202
    [requested] = h.queued
    assert h.queue.urgent == {requested} and purchase not in h.queue.urgent


def test_retry_with_skipped_replays_steps_skipped_while_a_flag_was_off(make_harness):
    from engine.pipeline.runtime import DisabledConnector

    off = DisabledConnector("manychat", frozenset({"add_tag", "set_field", "trigger_flow"}), "MANYCHAT_ENABLED")
    h = make_harness(connectors={"add_tag": off, "set_field": off, "trigger_flow": off})
    client = TestClient(create_app(h.runtime))
    event_id = post_webhook(client, load_payload("purchase_approved.json")).json()["event_id"]
    h.run_queue()
    detail = client.get(f"/admin/events/{event_id}", headers=AUTH).json()
    assert detail["status"] == "processed"
    assert [s["status"] for s in detail["steps"] if s["action"] == "trigger_flow"] == ["skipped"]
    # Turning the flag on replays nothing by itself; a plain retry refuses a processed event.
    assert client.post(f"/admin/events/{event_id}/retry", headers=AUTH).status_code == 409
    for action in ("add_tag", "set_field", "trigger_flow"):
        h.runtime.connectors[action] = h.manychat
    assert client.post(f"/admin/events/{event_id}/retry", params={"skipped": "true"}, headers=AUTH).status_code == 202
    h.run_queue()
    detail = client.get(f"/admin/events/{event_id}", headers=AUTH).json()
    assert detail["status"] == "processed" and all(s["status"] == "done" for s in detail["steps"])
    assert h.manychat.actions_called() == ["add_tag", "set_field", "trigger_flow"]
