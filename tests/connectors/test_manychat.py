"""ManyChat connector against hand-written cassettes (wire format from manychat.md).

Cassettes are matched on method, URL, query and JSON body, and each interaction plays
once, so an extra or different request fails the test.
"""

from __future__ import annotations

import json
from dataclasses import replace

import httpx
import pytest

from connectors.base import Step, StepContext, StepStatus, StudentRef
from connectors.errors import WireError
from connectors.manychat import ManyChatConnector

TOKEN = "1234567890123456:secret-api-key"
FLOW_NS = "content20261101000000_000001"

ANA = StudentRef(id=1, email="ana@example.com", name="Ana Souza", phone="+5511987654321")
ANA_STORED = StudentRef(
    id=1,
    email="ana@example.com",
    name="Ana Souza",
    phone="+5511987654321",
    manychat_subscriber_id="900000001",
)
BIA = StudentRef(id=2, email="bia@example.com", name="Beatriz Lima Costa", phone="+5521912345678")


@pytest.fixture
def connector(spy, sleeps):
    conn = ManyChatConnector(TOKEN, transport=spy, sleep=sleeps.append)
    yield conn
    conn.close()


def ctx(student: StudentRef) -> StepContext:
    return StepContext(student=student, event_id=7, event_type="purchase_approved")


def add_tag(*tags: str, **extra) -> Step:
    return Step("add_tag", {"tags": list(tags), **extra})


def assert_no_secret(result) -> None:
    assert "secret-api-key" not in result.detail
    assert "secret-api-key" not in repr(result)


@pytest.mark.vcr
def test_find_by_email_then_add_tag(connector, vcr, spy):
    result = connector.run(add_tag("aluno-curso"), ctx(ANA))

    assert result.status is StepStatus.DONE
    assert result.data == {"manychat_subscriber_id": "900000001"}
    assert vcr.all_played
    assert spy.sent[0].headers["authorization"] == f"Bearer {TOKEN}"


@pytest.mark.vcr
def test_create_subscriber_when_allowed(connector, vcr, spy):
    result = connector.run(add_tag("aluno-curso", create_if_missing=True), ctx(BIA))

    assert result.status is StepStatus.DONE
    assert result.data == {"manychat_subscriber_id": "900000002"}
    assert vcr.all_played
    # The phone lookup sent the "+" percent-encoded.
    assert b"phone=%2B5521912345678" in spy.sent[1].url.raw_path


@pytest.mark.vcr
def test_create_conflict_looks_up_again(connector, vcr):
    result = connector.run(add_tag("aluno-curso", create_if_missing=True), ctx(BIA))

    assert result.status is StepStatus.DONE
    assert result.data == {"manychat_subscriber_id": "900000007"}
    assert vcr.all_played


@pytest.mark.vcr
def test_subscriber_not_found(connector, vcr):
    result = connector.run(add_tag("aluno-curso"), ctx(BIA))

    assert result.status is StepStatus.FAILED
    assert result.error == "manychat.subscriber_not_found"
    assert not result.retryable
    assert "first contact" in result.detail
    assert result.data == {}
    assert vcr.all_played  # looked up by email and phone, never tried to create


@pytest.mark.vcr
def test_set_field_then_send_flow(connector, vcr, spy):
    field = connector.run(Step("set_field", {"field": "codigo_discord", "value": "ABCD2345"}), ctx(ANA_STORED))
    flow = connector.run(Step("trigger_flow", {"flow": "onboarding", "flow_ns": FLOW_NS}), ctx(ANA_STORED))

    assert field.status is StepStatus.DONE and field.data == {}  # stored id: nothing new
    assert flow.status is StepStatus.DONE
    assert vcr.all_played
    sent_flow = spy.sent[-1]
    assert sent_flow.url.path == "/fb/sending/sendFlow"
    assert json.loads(sent_flow.content) == {"subscriber_id": 900000001, "flow_ns": FLOW_NS}


@pytest.mark.vcr
def test_http_200_with_status_error(connector, vcr):
    result = connector.run(Step("set_field", {"field": "codigo_discord", "value": "ABCD2345"}), ctx(ANA_STORED))

    assert result.status is StepStatus.FAILED
    assert result.error == "manychat.bad_request"
    assert not result.retryable
    assert "invalid for this field type" in result.detail  # details.messages joined in


@pytest.mark.vcr
def test_wrong_token(connector, vcr):
    result = connector.run(add_tag("aluno-curso"), ctx(ANA_STORED))

    assert result.error == "manychat.unauthorized"
    assert not result.retryable
    assert "Wrong token" in result.detail
    assert_no_secret(result)


@pytest.mark.vcr
def test_500_on_add_tag_is_retryable(connector, vcr):
    result = connector.run(add_tag("aluno-curso"), ctx(ANA_STORED))

    assert result.error == "manychat.unavailable"
    assert result.retryable
    assert not result.maybe_delivered
    assert vcr.all_played  # one call: the worker owns retries of 5xx


@pytest.mark.vcr
def test_500_on_send_flow_maybe_delivered(connector, vcr):
    result = connector.run(Step("trigger_flow", {"flow": "onboarding", "flow_ns": FLOW_NS}), ctx(ANA_STORED))

    assert result.error == "manychat.unavailable"
    assert not result.retryable
    assert result.maybe_delivered
    assert "may have been delivered" in result.detail


@pytest.mark.vcr
def test_unknown_tag(connector, vcr):
    result = connector.run(add_tag("aluno-inexistente"), ctx(ANA_STORED))

    assert result.error == "manychat.unknown_tag"
    assert not result.retryable
    assert "aluno-inexistente" in result.detail


@pytest.mark.vcr
def test_rate_limited_backs_off_then_succeeds(connector, vcr, sleeps):
    result = connector.run(Step("remove_tag", {"tags": ["aluno-curso"]}), ctx(ANA_STORED))

    assert result.status is StepStatus.DONE
    assert sleeps == [3.0, 2.0]  # Retry-After honoured, then the 1 s -> 2 s ladder
    assert vcr.all_played


@pytest.mark.vcr
def test_stale_stored_id_resolves_again(connector, vcr):
    result = connector.run(add_tag("aluno-curso"), ctx(ANA_STORED))

    assert result.status is StepStatus.DONE
    assert result.data == {"manychat_subscriber_id": "900000009"}
    assert vcr.all_played


@pytest.mark.vcr
def test_html_404_does_not_crash(connector, vcr):
    result = connector.run(add_tag("aluno-curso"), ctx(ANA_STORED))

    assert result.error == "manychat.bad_request"
    assert "non-JSON" in result.detail


# ---- transport failures and local limits: no cassette needed ----------------


def mock_connector(handler, sleeps=None, clock=None) -> ManyChatConnector:
    kwargs = {"clock": clock} if clock else {}
    return ManyChatConnector(
        TOKEN,
        transport=httpx.MockTransport(handler),
        sleep=(sleeps.append if sleeps is not None else lambda s: None),
        **kwargs,
    )


FLOW = Step("trigger_flow", {"flow": "onboarding", "flow_ns": FLOW_NS})


def test_flow_connect_error_is_safe_to_retry():
    def refuse(request):
        raise httpx.ConnectError("connection refused", request=request)

    result = mock_connector(refuse).run(FLOW, ctx(ANA_STORED))

    assert result.error == "manychat.unavailable"
    assert result.retryable and not result.maybe_delivered


def test_flow_read_timeout_may_be_delivered():
    def stall(request):
        raise httpx.ReadTimeout("timed out", request=request)

    result = mock_connector(stall).run(FLOW, ctx(ANA_STORED))

    assert result.error == "manychat.unavailable"
    assert not result.retryable and result.maybe_delivered


def test_flow_unreadable_2xx_may_be_delivered():
    result = mock_connector(lambda request: httpx.Response(200, text="OK")).run(FLOW, ctx(ANA_STORED))

    assert result.maybe_delivered and not result.retryable


def test_flow_429_exhausted_is_retryable_and_not_delivered():
    sleeps: list[float] = []
    calls = []

    def limited(request):
        calls.append(request)
        return httpx.Response(429, json={"status": "error", "message": "Too many requests"})

    result = mock_connector(limited, sleeps).run(FLOW, ctx(ANA_STORED))

    assert result.error == "manychat.rate_limited"
    assert result.retryable and not result.maybe_delivered
    assert len(calls) == 4 and sleeps == [1.0, 2.0, 4.0]


def test_flow_per_subscriber_hourly_cap():
    now = [1000.0]
    sent = []

    def accept(request):
        sent.append(request)
        return httpx.Response(200, json={"status": "success"})

    conn = mock_connector(accept, clock=lambda: now[0])
    for _ in range(100):
        now[0] += 0.1  # keep the 20/s bucket from sleeping
        assert conn.run(FLOW, ctx(ANA_STORED)).ok
    capped = conn.run(FLOW, ctx(ANA_STORED))
    now[0] += 3600
    later = conn.run(FLOW, ctx(ANA_STORED))

    assert capped.error == "manychat.rate_limited" and capped.retryable
    assert not capped.maybe_delivered
    assert later.ok
    assert len(sent) == 101


def test_subscribers_an_hour_quiet_are_forgotten():
    """Every new student gets flows: the per-subscriber count must not grow with the history (the
    soak's worker RSS grew 0.4 MB a minute before it did not)."""
    now = [1000.0]
    conn = mock_connector(lambda request: httpx.Response(200, json={"status": "success"}), clock=lambda: now[0])
    wire = conn._wire
    for number in range(500):
        now[0] += 0.1
        student = replace(ANA_STORED, manychat_subscriber_id=str(10_000 + number))
        assert conn.run(FLOW, ctx(student)).ok
    assert wire.flow_subscribers() == 500
    now[0] += 3600 + 60
    assert conn.run(FLOW, ctx(ANA_STORED)).ok
    assert wire.flow_subscribers() == 1


def test_bad_params_and_unknown_action():
    conn = mock_connector(lambda request: pytest.fail("no request expected"))

    assert conn.run(Step("add_tag", {}), ctx(ANA_STORED)).error == "manychat.bad_request"
    assert conn.run(Step("trigger_flow", {"flow": "x"}), ctx(ANA_STORED)).error == ("manychat.bad_request")
    assert conn.run(Step("send_sms", {}), ctx(ANA_STORED)).error == "manychat.bad_request"


def test_never_calls_account_wide_remove_tag():
    paths = []

    def accept(request):
        paths.append(request.url.path)
        return httpx.Response(200, json={"status": "success"})

    mock_connector(accept).run(Step("remove_tag", {"tags": ["a", "b"]}), ctx(ANA_STORED))

    assert paths == ["/fb/subscriber/removeTagByName"] * 2


def test_flow_is_in_flight_only_while_its_request_may_be_delivered():
    """The engine's hooks: marked right before each write, unmarked while a 429 backoff waits."""
    events: list[str] = []
    replies = iter([httpx.Response(429, json={"status": "error", "message": "Too many requests"})])

    def answer(request):
        events.append("write")
        return next(replies, httpx.Response(200, json={"status": "success"}))

    hooked = replace(
        ctx(ANA_STORED), before_send=lambda: events.append("in flight"), not_sent=lambda: events.append("not sent")
    )
    sleeps: list[float] = []
    result = mock_connector(answer, sleeps).run(FLOW, hooked)
    assert result.ok
    assert events == ["in flight", "write", "not sent", "in flight", "write"]
    assert sleeps == [1.0]


def test_idempotent_steps_never_call_the_in_flight_hook():
    events: list[str] = []
    hooked = replace(ctx(ANA_STORED), before_send=lambda: events.append("in flight"))
    ok = mock_connector(lambda request: httpx.Response(200, json={"status": "success"}))
    assert ok.run(Step("add_tag", {"tags": ["aluno-curso"]}), hooked).ok
    assert events == []


def test_subscriber_tags_reads_get_info():
    seen = []

    def handler(request):
        seen.append(request)
        sid = request.url.params["subscriber_id"]
        if sid == "900000001":
            tags = [{"id": 11, "name": "aluno-curso"}, {"id": 12, "name": "assinante"}]
            return httpx.Response(200, json={"status": "success", "data": {"id": sid, "tags": tags}})
        if sid == "900000002":
            return httpx.Response(400, json={"status": "error", "message": "Subscriber not found"})
        return httpx.Response(401, json={"status": "error", "message": "Wrong token"})

    connector = mock_connector(handler)
    assert connector.subscriber_tags("900000001") == {"aluno-curso", "assinante"}
    assert connector.subscriber_tags("900000002") is None
    with pytest.raises(WireError) as raised:
        connector.subscriber_tags("900000003")
    assert raised.value.error == "manychat.unauthorized"
    assert {(r.method, r.url.path) for r in seen} == {("GET", "/fb/subscriber/getInfo")}
