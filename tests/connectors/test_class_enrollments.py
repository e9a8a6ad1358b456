"""Reading the course platform's enrollments (COURSE_ENROLLMENTS_URL) against hand-written cassettes:
the contract of docs/operations/course-platform.md, "Reconcile against the platform".

``GET {url}?class=<key>&cursor=<next_cursor>`` signed as a Standard Webhooks message over an empty
body; ``{"enrollments": [{"email": ...}], "next_cursor": ...}`` a page. Cassettes match on method,
URL (the query too) and body, and each interaction plays once, so an extra or different request
fails the test. The signature is checked with the ``standardwebhooks`` library, as a platform would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import httpx
import pytest
from standardwebhooks import Webhook

from connectors.classes import ClassesConnector
from connectors.errors import Misconfigured, RateLimited, Rejected, Unauthorized, Unavailable

WEBHOOKS = "https://course.example.com/webhooks/engine"
URL = "https://course.example.com/engine/enrollments"
SECRET = "whsec_dGhlLWNvdXJzZS1wbGF0Zm9ybXMtdGVzdC1zZWNyZXQ="


@pytest.fixture(scope="module")
def vcr_config():
    return {"record_mode": "none", "match_on": ["method", "scheme", "host", "port", "path", "query", "body"]}


@contextmanager
def reader_over(platform: Callable[[httpx.Request], httpx.Response], **options) -> Iterator[ClassesConnector]:
    """A reader whose requests ``platform`` answers in-process (what a cassette cannot play: no answer)."""
    conn = ClassesConnector(WEBHOOKS, SECRET, transport=httpx.MockTransport(platform), **options)
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def reader(spy, waits):
    conn = ClassesConnector(WEBHOOKS, SECRET, enrollments_url=URL, transport=spy, sleep=waits.append)
    yield conn
    conn.close()


@pytest.mark.vcr
def test_two_pages_are_read_in_cursor_order(reader, vcr, spy, waits):
    assert list(reader.list_enrollments("curso-2026")) == ["ana@example.com", "bia@example.com", "caio@example.com"]
    assert vcr.all_played and waits == []
    for request in spy.sent:
        assert request.method == "GET" and request.content == b""
        assert request.headers["webhook-id"].startswith("req_")
        # What a platform runs: the library, its secret, the headers, an empty body.
        assert Webhook(SECRET).verify(b"", dict(request.headers), json_parse=False) is None
        assert SECRET not in str(request.headers) and "authorization" not in request.headers
    assert len({request.headers["webhook-id"] for request in spy.sent}) == 2  # a fresh id per request


def test_the_signature_covers_an_empty_body_only():
    """A read signed over anything else (a body, another id) fails the platform's verification."""
    sent: list[httpx.Request] = []

    def platform(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={"enrollments": [], "next_cursor": None})

    with reader_over(platform, enrollments_url=URL) as conn:
        assert list(conn.list_enrollments("curso-2026")) == []
    headers = dict(sent[0].headers)
    now = datetime.fromtimestamp(int(headers["webhook-timestamp"]), UTC)
    assert headers["webhook-signature"] == Webhook(SECRET).sign(headers["webhook-id"], now, b"")
    with pytest.raises(Exception, match="signature"):
        Webhook(SECRET).verify(b"{}", headers, json_parse=False)
    with pytest.raises(Exception, match="signature"):
        Webhook(SECRET).verify(b"", {**headers, "webhook-id": "req_other"}, json_parse=False)


@pytest.mark.vcr
def test_an_empty_class_keeps_the_urls_own_query(spy, vcr):
    conn = ClassesConnector(
        WEBHOOKS, SECRET, enrollments_url="https://course.example.com/api/enrollments?school=7", transport=spy
    )
    try:
        assert list(conn.list_enrollments("python-pro")) == []
    finally:
        conn.close()
    assert vcr.all_played


@pytest.mark.vcr
def test_a_server_error_is_read_again_after_a_pause(reader, vcr, waits):
    assert list(reader.list_enrollments("curso-2026")) == ["ana@example.com"]
    assert waits == [1.0] and vcr.all_played


@pytest.mark.vcr
def test_too_many_requests_waits_what_the_platform_asks(reader, vcr, waits):
    assert list(reader.list_enrollments("curso-2026")) == ["ana@example.com"]
    assert waits == [3.0] and vcr.all_played


@pytest.mark.vcr
def test_a_long_retry_after_is_not_waited(reader, vcr, waits):
    with pytest.raises(RateLimited) as raised:
        list(reader.list_enrollments("curso-2026"))
    assert raised.value.error == "classes.rate_limited" and waits == []
    assert "enrollments of curso-2026, page 1" in raised.value.detail
    assert vcr.all_played


@pytest.mark.vcr
def test_a_platform_that_stays_down_fails_the_read(reader, vcr, waits):
    with pytest.raises(Unavailable) as raised:
        list(reader.list_enrollments("curso-2026"))
    assert raised.value.error == "classes.unavailable" and "HTTP 503" in raised.value.detail
    assert "maintenance" in raised.value.detail
    assert waits == [1.0, 2.0, 4.0] and vcr.all_played


@pytest.mark.vcr
def test_a_later_page_that_fails_fails_the_whole_read(reader, vcr):
    emails = reader.list_enrollments("curso-2026")
    assert next(emails) == "ana@example.com"
    with pytest.raises(Unavailable, match="page 2: the course platform answered HTTP 502"):
        list(emails)
    assert vcr.all_played


def test_no_answer_is_tried_again_then_fails():
    calls: list[httpx.Request] = []

    def silent(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ConnectError("connection refused")

    waits: list[float] = []
    with (
        reader_over(silent, enrollments_url=URL, sleep=waits.append) as conn,
        pytest.raises(Unavailable, match="did not answer .ConnectError"),
    ):
        list(conn.list_enrollments("curso-2026"))
    assert len(calls) == 4 and waits == [1.0, 2.0, 4.0]


@pytest.mark.vcr
def test_a_refused_signature_is_unauthorized_at_once(reader, vcr, waits):
    with pytest.raises(Unauthorized) as raised:
        list(reader.list_enrollments("curso-2026"))
    assert "COURSE_WEBHOOK_SECRET" in raised.value.detail and SECRET not in raised.value.detail
    assert waits == [] and vcr.all_played


@pytest.mark.vcr
def test_nothing_there_names_the_setting(reader, vcr):
    with pytest.raises(Misconfigured) as raised:
        list(reader.list_enrollments("curso-2026"))
    assert raised.value.error == "classes.misconfigured"
    assert "nothing serves enrollments there; check COURSE_ENROLLMENTS_URL" in raised.value.detail
    assert vcr.all_played


@pytest.mark.vcr
def test_a_redirect_is_not_followed(reader, vcr, spy):
    with pytest.raises(Misconfigured) as raised:
        list(reader.list_enrollments("curso-2026"))
    assert "https://cursos.example.com/engine/enrollments" in raised.value.detail
    assert "COURSE_ENROLLMENTS_URL" in raised.value.detail and len(spy.sent) == 1
    assert vcr.all_played


@pytest.mark.vcr
def test_a_reply_outside_the_contract_is_not_taken(reader, vcr):
    expected = {
        "a": 'not a JSON object with an "enrollments" list',
        "b": 'enrollment 2 has no "email"',
        "c": "next_cursor must be a string or null, not int",
        "d": 'not a JSON object with an "enrollments" list',
    }
    for key, said in expected.items():
        with pytest.raises(Unavailable) as raised:
            list(reader.list_enrollments(key))
        assert raised.value.error == "classes.bad_reply"
        assert raised.value.detail == f"enrollments of {key}, page 1: {said}".replace(": not", ": the reply is not")
    assert vcr.all_played


@pytest.mark.vcr
def test_a_cursor_given_twice_stops_the_read(reader, vcr):
    with pytest.raises(Unavailable, match="page 3: next_cursor 'p2' came before"):
        list(reader.list_enrollments("curso-2026"))
    assert vcr.all_played


def test_without_the_url_nothing_is_asked():
    def platform(request: httpx.Request) -> httpx.Response:
        raise AssertionError("nothing may be sent")

    with reader_over(platform) as conn:
        assert not conn.reads_enrollments
        with pytest.raises(Rejected, match="COURSE_ENROLLMENTS_URL is not set"):
            list(conn.list_enrollments("curso-2026"))
