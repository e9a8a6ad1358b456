"""ManyChat connector end to end against the fake ManyChat served over real HTTP."""

from __future__ import annotations

import time

import httpx
import pytest

from connectors.base import Step, StepContext, StepStatus, StudentRef
from connectors.manychat import ManyChatConnector
from tests.fakes.manychat_app import create_app
from tests.fakes.server import serve

FLOW_NS = "content20261101000000_000001"
ANA = StudentRef(id=1, email="ana@example.com", name="Ana Souza", phone="+5511987654321")


def ctx(student: StudentRef) -> StepContext:
    return StepContext(student=student, event_id=1, event_type="purchase_approved")


@pytest.fixture
def served(request):
    """(app, base_url); parametrize ``served`` indirectly to pass the fake's rate limits."""
    app = create_app(token="test-token", limits=getattr(request, "param", None))
    fake = app.state.fake
    fake.seed_tags("aluno-curso", "aluno-python-pro")
    fake.seed_fields("codigo_discord")
    fake.seed_flows({FLOW_NS: "Onboarding"})
    with serve(app) as url:
        yield app, url


@pytest.fixture
def fake(served):
    return served[0].state.fake


@pytest.fixture
def connector(served):
    conn = ManyChatConnector("test-token", api_base=served[1], timeout=2.0)
    yield conn
    conn.close()


def test_tags_fields_and_flows_land_in_the_fake(fake, connector):
    sub = fake.seed_subscriber(email=ANA.email, whatsapp_phone=ANA.phone, first_name="Ana")
    steps = [
        Step("add_tag", {"tags": ["aluno-curso", "aluno-python-pro"]}),
        Step("remove_tag", {"tags": ["aluno-python-pro"]}),
        Step("set_field", {"field": "codigo_discord", "value": "ABCD2345"}),
        Step("trigger_flow", {"flow": "onboarding", "flow_ns": FLOW_NS}),
    ]

    results = [connector.run(step, ctx(ANA)) for step in steps]

    assert [r.status for r in results] == [StepStatus.DONE] * 4
    assert results[0].data == {"manychat_subscriber_id": sub.id}
    assert sub.tags == {"aluno-curso"}
    assert sub.fields == {"codigo_discord": "ABCD2345"}
    assert [(sid, ns) for sid, ns, _ in fake.flows_sent] == [(sub.id, FLOW_NS)]


def test_flow_timeout_is_maybe_delivered_and_sent_once(served, fake):
    sub = fake.seed_subscriber(email=ANA.email, whatsapp_phone=ANA.phone)
    fake.stall("sendFlow", 0.8)
    conn = ManyChatConnector("test-token", api_base=served[1], timeout=0.3)
    try:
        result = conn.run(Step("trigger_flow", {"flow_ns": FLOW_NS}), ctx(ANA))
    finally:
        conn.close()

    assert result.status is StepStatus.FAILED
    assert result.error == "manychat.unavailable"
    assert result.maybe_delivered and not result.retryable
    assert "may have been delivered" in result.detail
    assert [(sid, ns) for sid, ns, _ in fake.flows_sent] == [(sub.id, FLOW_NS)]
    assert fake.requests.count(("POST", "/fb/sending/sendFlow")) == 1  # never resent


@pytest.mark.slow
@pytest.mark.parametrize("served", [{"default": 12}], indirect=True)
def test_burst_of_add_tag_is_paced_without_failures(fake, connector):
    sub = fake.seed_subscriber(email=ANA.email, whatsapp_phone=ANA.phone)
    stored = StudentRef(id=1, email=ANA.email, manychat_subscriber_id=sub.id)

    started = time.monotonic()
    results = [connector.run(Step("add_tag", {"tags": ["aluno-curso"]}), ctx(stored)) for _ in range(30)]
    elapsed = time.monotonic() - started

    assert all(r.ok for r in results)
    assert fake.rate_limited == 0  # the client-side bucket (10/s) kept under the fake's 12/s
    assert elapsed > 1.5  # 10 at once, then 10 per second


@pytest.mark.parametrize("served", [{"default": 5}], indirect=True)
def test_rate_limit_429_is_absorbed_by_backoff(served, fake):
    sub = fake.seed_subscriber(email=ANA.email, whatsapp_phone=ANA.phone)
    stored = StudentRef(id=1, email=ANA.email, manychat_subscriber_id=sub.id)
    # No client-side pacing and a shortened backoff: only the 429 handling is at work.
    conn = ManyChatConnector(
        "test-token",
        api_base=served[1],
        rates={"default": 1000},
        sleep=lambda seconds: time.sleep(seconds / 4),
    )
    try:
        results = [conn.run(Step("add_tag", {"tags": ["aluno-curso"]}), ctx(stored)) for _ in range(8)]
    finally:
        conn.close()

    assert all(r.ok for r in results)
    assert fake.rate_limited > 0


def test_subscriber_not_found(fake, connector):
    result = connector.run(Step("add_tag", {"tags": ["aluno-curso"]}), ctx(ANA))

    assert result.error == "manychat.subscriber_not_found"
    assert not result.retryable
    assert fake.subscribers == {}
    assert ("POST", "/fb/subscriber/createSubscriber") not in fake.requests


def test_create_on_demand_stores_the_id(fake, connector):
    step = Step("set_field", {"field": "codigo_discord", "value": "XYZ", "create_if_missing": True})

    result = connector.run(step, ctx(ANA))

    assert result.status is StepStatus.DONE
    sid = result.data["manychat_subscriber_id"]
    sub = fake.subscribers[sid]
    assert (sub.whatsapp_phone, sub.email, sub.first_name, sub.last_name) == (
        "+5511987654321",
        "ana@example.com",
        "Ana",
        "Souza",
    )
    assert sub.optin_whatsapp and not sub.optin_email
    assert sub.fields == {"codigo_discord": "XYZ"}


def test_unknown_tag_field_flow_and_wrong_token(served, fake, connector):
    fake.seed_subscriber(email=ANA.email, whatsapp_phone=ANA.phone)

    tag = connector.run(Step("add_tag", {"tags": ["nope"]}), ctx(ANA))
    field = connector.run(Step("set_field", {"field": "nope", "value": 1}), ctx(ANA))
    flow = connector.run(Step("trigger_flow", {"flow_ns": "content_nope"}), ctx(ANA))
    wrong = ManyChatConnector("wrong-token", api_base=served[1])
    try:
        unauthorized = wrong.run(Step("add_tag", {"tags": ["aluno-curso"]}), ctx(ANA))
    finally:
        wrong.close()

    assert (tag.error, field.error, flow.error) == (
        "manychat.unknown_tag",
        "manychat.unknown_field",
        "manychat.unknown_flow",
    )
    assert not flow.maybe_delivered and fake.flows_sent == []
    assert unauthorized.error == "manychat.unauthorized"
    assert "wrong-token" not in unauthorized.detail


def test_queued_500_then_retry_succeeds(fake, connector):
    sub = fake.seed_subscriber(email=ANA.email, whatsapp_phone=ANA.phone)
    fake.queue_failure(500, "addTagByName")

    first = connector.run(Step("add_tag", {"tags": ["aluno-curso"]}), ctx(ANA))
    second = connector.run(Step("add_tag", {"tags": ["aluno-curso"]}), ctx(ANA))

    assert first.error == "manychat.unavailable" and first.retryable
    assert second.ok and sub.tags == {"aluno-curso"}


def test_control_endpoints(served):
    _, url = served
    with httpx.Client(base_url=url) as client:
        client.post("/_fake/reset")
        client.post("/_fake/tags", json={"names": ["t1"]})
        client.post("/_fake/fields", json={"fields": [{"name": "f1", "type": "number"}]})
        client.post("/_fake/flows", json={"flows": [{"ns": "content1", "name": "F"}]})
        sub = client.post("/_fake/subscribers", json={"email": "x@example.com"}).json()
        client.post("/_fake/failures", json={"status": 429, "path_contains": "getTags"})
        auth = {"Authorization": "Bearer test-token"}

        limited = client.get("/fb/page/getTags", headers=auth)
        tags = client.get("/fb/page/getTags", headers=auth).json()
        flows = client.get("/fb/page/getFlows", headers=auth).json()
        client.put(f"/_fake/subscribers/{sub['id']}/tags", json={"tags": ["t1"]})
        info = client.get("/fb/subscriber/getInfo", params={"subscriber_id": sub["id"]}, headers=auth)
        no_token = client.get("/fb/page/getTags")
        html = client.get("/fb/nowhere", headers=auth)
        state = client.get("/_fake/state").json()

    assert limited.status_code == 429
    assert tags == {"status": "success", "data": [{"id": tags["data"][0]["id"], "name": "t1"}]}
    assert flows["data"]["flows"][0]["ns"] == "content1"
    assert info.json()["data"]["email"] == "x@example.com"
    assert [tag["name"] for tag in info.json()["data"]["tags"]] == ["t1"]  # set by hand, read by getInfo
    assert no_token.status_code == 401 and no_token.json()["message"] == "Token is required"
    assert html.status_code == 404 and html.headers["content-type"].startswith("text/html")
    assert state["rate_limited"] == 1 and state["fields"][0]["type"] == "number"


def test_a_flow_is_in_flight_only_once_its_request_is_written(fake, connector):
    """Over real HTTP the in-flight hook fires when the request's bytes go out, once per write."""
    from dataclasses import replace

    sub = fake.seed_subscriber(email=ANA.email, whatsapp_phone=ANA.phone, first_name="Ana")
    seen: list[tuple[str, int]] = []
    hooked = replace(
        ctx(StudentRef(id=1, email=ANA.email, manychat_subscriber_id=sub.id)),
        before_send=lambda: seen.append(("in flight", len(fake.flows_sent))),
    )
    result = connector.run(Step("trigger_flow", {"flow": "onboarding", "flow_ns": FLOW_NS}), hooked)
    assert result.ok, result
    assert seen == [("in flight", 0)]  # marked once, before the fake had the request
    assert [(sid, ns) for sid, ns, _ in fake.flows_sent] == [(sub.id, FLOW_NS)]


def test_a_flow_whose_connection_fails_was_never_in_flight():
    """Connecting is not writing: a refused connection leaves the flow unmarked and 'not sent'."""
    from dataclasses import replace

    marked: list[str] = []
    down = ManyChatConnector("test-token", api_base="http://127.0.0.1:1", timeout=2.0)
    try:
        hooked = replace(
            ctx(StudentRef(id=1, email=ANA.email, manychat_subscriber_id="900000001")),
            before_send=lambda: marked.append("in flight"),
        )
        result = down.run(Step("trigger_flow", {"flow": "onboarding", "flow_ns": FLOW_NS}), hooked)
    finally:
        down.close()
    assert result.status is StepStatus.FAILED and result.retryable
    assert marked == []
