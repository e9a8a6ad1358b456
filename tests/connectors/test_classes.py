"""The classes connector: Standard Webhooks signing, and enroll/unenroll steps against hand-written
cassettes (the wire format of docs/operations/course-platform.md; 2xx is success, as the spec says).

Cassettes are matched on method, URL and the exact body, and each interaction plays once, so an
extra or different request fails the test. The signature is checked against the spec's published
test vector and against the ``standardwebhooks`` library, an implementation independent of ours.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest
from standardwebhooks import Webhook

from connectors.base import Step, StepContext, StepStatus, StudentRef
from connectors.classes import ClassesConnector, event_body, webhook_id
from connectors.course_platform import sign, signing_key

URL = "https://course.example.com/webhooks/engine"
SECRET = "whsec_dGhlLWNvdXJzZS1wbGF0Zm9ybXMtdGVzdC1zZWNyZXQ="
NOW = 1772452800  # 2026-03-02T12:00:00Z
ANA = StudentRef(id=7, email="ana@example.com", name="Ana Souza", discord_id="80351110224678912")
CTX = StepContext(ANA, event_id=42, event_type="DISCORD_LINKED", product_key="curso", action_run_id=314)
NAMES = {"curso-2026": "Curso 2026", "python-pro": "Python Pro"}


def step(action: str, *classes: str, state: str = "active") -> Step:
    params = {"classes": list(classes), "class_names": NAMES, "membership_state": state}
    return Step(action, {**params, "planned_at": "2026-03-02T12:00:00Z"})


@pytest.fixture(scope="module")
def vcr_config():
    return {"record_mode": "none", "match_on": ["method", "scheme", "host", "port", "path", "query", "body"]}


@pytest.fixture
def connector(spy):
    conn = ClassesConnector(URL, SECRET, transport=spy, clock=lambda: NOW + 0.7)
    yield conn
    conn.close()


# -- signing ---------------------------------------------------------------------------------------


def test_the_signature_matches_the_specs_test_vector():
    """The vector of the standard-webhooks repository (libraries/go/webhook_test.go, TestWebhookSign)."""
    key = signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    signature = sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_a_whsec_secret_is_its_base64_bytes_any_other_its_text():
    assert signing_key(SECRET) == b"the-course-platforms-test-secret"
    assert signing_key("whsec_c2VjcmV0") == signing_key("whsec_c2VjcmV0=") == b"secret"  # padding optional
    assert signing_key("plain shared secret") == b"plain shared secret"
    with pytest.raises(ValueError, match="base64"):
        signing_key("whsec_not base64!")
    for empty in ("", "whsec_"):
        with pytest.raises(ValueError, match="empty"):
            signing_key(empty)


def test_the_library_verifies_what_the_connector_signs_with_either_secret_form():
    body, now = b'{"type":"class.enrollment.created"}', int(datetime.now(UTC).timestamp())
    for secret, library_key in ((SECRET, SECRET), ("plain shared secret", b"plain shared secret")):
        headers = {
            "webhook-id": "msg_1_curso-2026",
            "webhook-timestamp": str(now),
            "webhook-signature": sign(signing_key(secret), "msg_1_curso-2026", now, body),
        }
        assert Webhook(library_key).verify(body, headers) == {"type": "class.enrollment.created"}


def test_the_webhook_id_is_the_steps_and_the_classs():
    assert webhook_id(CTX, "enroll", "curso-2026") == "msg_314_curso-2026"
    no_run = StepContext(ANA, event_id=42)
    derived = webhook_id(no_run, "enroll", "curso-2026")
    assert derived == webhook_id(no_run, "enroll", "curso-2026") != webhook_id(no_run, "unenroll", "curso-2026")
    assert derived.startswith("msg_") and "." not in derived


def test_the_body_carries_the_event_schema():
    body = json.loads(event_body("class.enrollment.created", "curso-2026", step("enroll").params, CTX))
    assert body == {
        "type": "class.enrollment.created",
        "timestamp": "2026-03-02T12:00:00Z",
        "data": {
            "class_key": "curso-2026",
            "class_name": "Curso 2026",
            "student_id": 7,
            "email": "ana@example.com",
            "name": "Ana Souza",
            "discord_id": "80351110224678912",
            "product": "curso",
            "membership_state": "active",
            "event_id": 42,
        },
    }
    unlinked = StepContext(StudentRef(id=8, email="bia@example.com"), event_id=43, action_run_id=1)
    data = json.loads(event_body("class.enrollment.created", "x", {}, unlinked))["data"]
    assert (data["discord_id"], data["name"], data["product"], data["class_name"]) == (None, None, None, "x")


# -- the wire --------------------------------------------------------------------------------------


@pytest.mark.vcr
def test_enroll_sends_one_signed_created_message(connector, vcr, spy):
    result = connector.run(step("enroll", "curso-2026"), CTX)

    assert result.status is StepStatus.DONE
    assert result.detail == "class.enrollment.created sent for curso-2026 as msg_314_curso-2026"
    assert vcr.all_played
    [sent] = spy.sent
    assert sent.headers["webhook-id"] == "msg_314_curso-2026"
    assert sent.headers["webhook-timestamp"] == str(NOW)  # whole seconds of this attempt
    assert sent.headers["content-type"] == "application/json"
    expected = Webhook(SECRET).sign("msg_314_curso-2026", datetime.fromtimestamp(NOW, UTC), sent.content)
    assert sent.headers["webhook-signature"] == expected
    assert SECRET not in str(sent.headers) and "the-course-platforms" not in str(sent.headers)


@pytest.mark.vcr
def test_unenroll_sends_the_deletion(connector, vcr, spy):
    result = connector.run(step("unenroll", "curso-2026", state="refunded"), CTX)

    assert result.status is StepStatus.DONE
    assert result.detail.startswith("class.enrollment.deleted sent for curso-2026")
    assert vcr.all_played
    assert json.loads(spy.sent[0].content)["type"] == "class.enrollment.deleted"


@pytest.mark.vcr
def test_a_server_error_is_retryable(connector, vcr):
    result = connector.run(step("enroll", "curso-2026"), CTX)

    assert (result.status, result.error, result.retryable) == (StepStatus.FAILED, "classes.unavailable", True)
    assert "HTTP 503" in result.detail and "maintenance" in result.detail
    assert not result.maybe_delivered  # resending is harmless: the receiver deduplicates
    assert vcr.all_played


@pytest.mark.vcr
def test_too_many_requests_is_retryable(connector, vcr):
    result = connector.run(step("enroll", "curso-2026"), CTX)

    assert (result.error, result.retryable) == ("classes.rate_limited", True)
    assert vcr.all_played


@pytest.mark.vcr
def test_a_refused_signature_is_unauthorized_at_once(connector, vcr):
    result = connector.run(step("enroll", "curso-2026"), CTX)

    assert (result.status, result.error, result.retryable) == (StepStatus.FAILED, "classes.unauthorized", False)
    assert "COURSE_WEBHOOK_SECRET" in result.detail
    assert SECRET not in result.detail
    assert vcr.all_played


@pytest.mark.vcr
def test_gone_means_nothing_receives_there(connector, vcr):
    result = connector.run(step("enroll", "curso-2026"), CTX)

    assert (result.error, result.retryable) == ("classes.misconfigured", False)
    assert "HTTP 410" in result.detail and "COURSE_WEBHOOK_URL" in result.detail
    assert vcr.all_played


@pytest.mark.vcr
def test_a_refused_message_quotes_the_platform(connector, vcr):
    result = connector.run(step("enroll", "curso-2026"), CTX)

    assert (result.error, result.retryable) == ("classes.rejected", False)
    assert "unknown class curso-2026" in result.detail
    assert vcr.all_played


@pytest.mark.vcr
def test_a_redirect_is_not_followed(connector, vcr, spy):
    result = connector.run(step("enroll", "curso-2026"), CTX)

    assert (result.error, result.retryable) == ("classes.misconfigured", False)
    assert "https://course.example.com/v2/webhooks" in result.detail
    assert len(spy.sent) == 1  # the cassette holds one interaction: no second call
    assert vcr.all_played


@pytest.mark.vcr
def test_a_retry_resends_every_class_under_the_same_ids(connector, vcr, spy):
    both = step("enroll", "curso-2026", "python-pro")
    first = connector.run(both, CTX)
    assert (first.error, first.retryable) == ("classes.unavailable", True)
    assert "already sent: curso-2026 as msg_314_curso-2026" in first.detail

    again = connector.run(both, CTX)

    assert again.status is StepStatus.DONE
    assert vcr.all_played
    ids = [request.headers["webhook-id"] for request in spy.sent]
    assert ids == ["msg_314_curso-2026", "msg_314_python-pro"] * 2


@pytest.mark.parametrize(
    "failure", [httpx.ReadTimeout("timed out"), httpx.ConnectError("connection refused")], ids=type
)
def test_no_answer_is_retryable(failure):
    def transport(request: httpx.Request) -> httpx.Response:
        raise failure

    conn = ClassesConnector(URL, SECRET, transport=httpx.MockTransport(transport), timeout=0.5)
    try:
        result = conn.run(step("enroll", "curso-2026"), CTX)
    finally:
        conn.close()
    assert (result.error, result.retryable, result.maybe_delivered) == ("classes.unavailable", True, False)
    assert type(failure).__name__ in result.detail


def test_a_step_without_classes_sends_nothing_and_a_bad_one_fails():
    def transport(request: httpx.Request) -> httpx.Response:
        raise AssertionError("nothing may be sent")

    conn = ClassesConnector(URL, SECRET, transport=httpx.MockTransport(transport))
    try:
        assert conn.run(Step("enroll", {"classes": []}), CTX).status is StepStatus.DONE
        assert conn.run(Step("enroll", {"classes": "curso-2026"}), CTX).error == "classes.bad_request"
        assert conn.run(Step("add_role", {"classes": ["x"]}), CTX).error == "classes.bad_request"
    finally:
        conn.close()
