"""The Hotmart API client against hand-written cassettes (wire format from hotmart-api.md).

Cassettes are matched on method, URL, query and body, and each interaction plays once, so an
extra or different request fails the test. The client against the fake Hotmart API served over
HTTP (pages, the rate limit, injected failures) is ``test_hotmart_api_served.py``'s.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import httpx
import pytest

from connectors.errors import RateLimited, Unauthorized, Unavailable
from connectors.hotmart_api import HotmartApi

CLIENT_ID = "cassette-client-id"
SECRET = "cassette-client-secret"
BASIC = "Y2Fzc2V0dGUtY2xpZW50LWlkOmNhc3NldHRlLWNsaWVudC1zZWNyZXQ="  # base64 of id:secret
TOKEN = "H4sIAAAAAAAA_1-opaque-token"
PRODUCT = "4242001"
JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)
MAR_1 = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
def api(spy, sleeps):
    client = HotmartApi(CLIENT_ID, SECRET, BASIC, transport=spy, sleep=sleeps.append, now=lambda: MAR_1)
    yield client
    client.close()


@pytest.mark.vcr
def test_a_full_scan_follows_every_page(api, vcr, spy):
    items = list(
        api.subscriptions(product_id=PRODUCT, statuses=["ACTIVE", "CANCELLED_BY_CUSTOMER"], accession_from=JAN_1)
    )

    assert [item["subscriber_code"] for item in items] == ["I9OT62C3", "K3LM45NP", "Q7RS89TU"]
    assert items[1]["date_next_charge"] == 1770076800000  # as Hotmart gives it: epoch ms
    assert vcr.all_played
    token_request, first_page = spy.sent[0], spy.sent[1]
    assert token_request.headers["authorization"] == f"Basic {BASIC}"
    assert first_page.headers["authorization"] == f"Bearer {TOKEN}"
    # Repeated keys, not a comma list; the accession date always sent on a full scan.
    assert b"status=ACTIVE&status=CANCELLED_BY_CUSTOMER" in first_page.url.query
    assert first_page.url.params["accession_date"] == "1767225600000"


@pytest.mark.vcr
def test_each_sale_status_is_asked_for_on_its_own(api, vcr):
    sales = list(api.sales(product_id=PRODUCT, start=JAN_1, end=MAR_1, statuses=["REFUNDED", "CHARGEBACK"]))

    assert [(sale["purchase"]["transaction"], sale["purchase"]["status"]) for sale in sales] == [
        ("HP17690000000004", "REFUNDED"),
        ("HP17700000000005", "CHARGEBACK"),
    ]
    assert vcr.all_played


@pytest.mark.vcr
def test_an_expired_token_is_renewed_once(api, vcr):
    items = list(api.subscriptions(product_id=PRODUCT, accession_from=JAN_1, subscriber_email="ana@example.com"))

    assert [item["subscriber"]["email"] for item in items] == ["ana@example.com"]
    assert vcr.all_played  # token, 401, a second token, the read again


@pytest.mark.vcr
def test_refused_credentials_name_the_settings(api, vcr, caplog):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(Unauthorized) as caught:
        api.check()

    assert caught.value.error == "hotmart.unauthorized"
    assert caught.value.detail.startswith(
        "Hotmart refused the API credentials (HTTP 401: invalid_client; Bad client credentials); "
        "check HOTMART_CLIENT_ID, HOTMART_CLIENT_SECRET and HOTMART_BASIC"
    )
    # httpx's own request line carries the token URL: redacted (vcr's lines are the test's, not ours).
    logged = "\n".join(record.getMessage() for record in caplog.records if not record.name.startswith("vcr"))
    assert "client_secret=***" in logged
    for text in (str(caught.value), logged):
        assert SECRET not in text and BASIC not in text
    assert vcr.all_played


@pytest.mark.vcr
def test_a_429_waits_for_the_reset_then_reads(api, vcr, sleeps):
    items = list(api.subscriptions(product_id=PRODUCT, accession_from=JAN_1, subscriber_email="ana@example.com"))

    assert len(items) == 1
    assert sleeps == [12.0]  # RateLimit-Reset, as no Retry-After came
    assert vcr.all_played


@pytest.mark.vcr
def test_a_bad_gateway_narrows_the_window(api, vcr):
    sales = list(api.sales(product_id=PRODUCT, start=JAN_1, end=MAR_1))

    assert [sale["purchase"]["transaction"] for sale in sales] == ["HP17673120000001", "HP17710000000006"]
    assert vcr.all_played  # the 60 days, then Jan 1 - Jan 30 12:00, then the rest


@pytest.mark.vcr
def test_check_reads_one_page(api, vcr):
    assert api.check() == (
        "token obtained and 412 subscription(s) of the last 30 days read at https://developers.hotmart.com"
    )
    assert vcr.all_played


# --------------------------------------------------------------- without a server: httpx.MockTransport


def _token_reply() -> httpx.Response:
    return httpx.Response(200, json={"access_token": TOKEN, "expires_in": 3600, "token_type": "bearer"})


def mock_api(handler, **options) -> HotmartApi:
    def route(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/oauth/token"):
            return _token_reply()
        return handler(request)

    options.setdefault("sleep", lambda seconds: None)
    return HotmartApi(CLIENT_ID, SECRET, f"Basic {BASIC}", transport=httpx.MockTransport(route), **options)


def page(*codes: str, next_token: str | None = None) -> httpx.Response:
    info = {"total_results": 99, **({"next_page_token": next_token} if next_token else {})}
    return httpx.Response(200, json={"items": [{"subscriber_code": code} for code in codes], "page_info": info})


def test_a_failure_mid_pages_narrows_without_repeating_what_was_read():
    asked: list[tuple[str | None, str | None, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        params = request.url.params
        asked.append((params.get("accession_date"), params.get("end_accession_date"), params.get("page_token")))
        if len(asked) == 2:  # the second page of the whole window: Hotmart gives up
            raise httpx.ReadTimeout("timed out")
        if params.get("end_accession_date") is None:
            return page("A", "B", next_token="p2")
        return page("B", "C") if len(asked) == 3 else page("D")

    api = mock_api(handler, now=lambda: MAR_1)
    codes = [item["subscriber_code"] for item in api.subscriptions(product_id=PRODUCT, accession_from=JAN_1)]

    assert codes == ["A", "B", "C", "D"]  # B read twice, yielded once
    assert asked[:2] == [("1767225600000", None, None), ("1767225600000", None, "p2")]
    assert asked[2:] == [("1767225600000", "1769774400000", None), ("1769774400001", "1772323200000", None)]


def test_a_window_still_failing_at_the_minimum_is_an_error():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, json={"error": "bad_gateway"})

    api = mock_api(handler)
    start = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    end = datetime(2026, 1, 1, 3, 0, tzinfo=UTC)
    with pytest.raises(Unavailable, match=r"Hotmart answered HTTP 502: bad_gateway") as caught:
        list(api.sales(product_id=PRODUCT, start=start, end=end))
    assert caught.value.retryable and caught.value.error == "hotmart.unavailable"


def test_a_429_that_never_ends_gives_up_after_the_longest_wait():
    waits: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "60"}, json={"error": "too_many_requests"})

    api = mock_api(handler, sleep=waits.append, max_rate_wait=300)
    with pytest.raises(RateLimited, match="still answers 429 after 300 s of waiting"):
        api.check()
    assert waits == [60.0] * 5


def test_a_spent_budget_waits_for_the_reset_before_the_next_request():
    waits: list[float] = []
    now = [100.0]

    def handler(request: httpx.Request) -> httpx.Response:
        token = request.url.params.get("page_token")
        headers = {"RateLimit-Remaining": "0", "RateLimit-Reset": "20"}
        if token is None:
            return httpx.Response(200, headers=headers, json=page("A", next_token="p2").json())
        return httpx.Response(200, headers={"RateLimit-Remaining": "499"}, json=page("B").json())

    api = mock_api(handler, sleep=waits.append, clock=lambda: now[0])
    assert [item["subscriber_code"] for item in api.subscriptions(product_id=PRODUCT, accession_from=JAN_1)] == [
        "A",
        "B",
    ]
    assert waits == [20.0]


def test_bad_input_is_refused_before_any_request():
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request expected")

    api = mock_api(handler)
    with pytest.raises(ValueError, match="'CANCELLED_BY_BUYER': not a Hotmart subscription status"):
        list(api.subscriptions(product_id=PRODUCT, statuses=["CANCELLED_BY_BUYER"]))
    with pytest.raises(ValueError, match="a list of sale statuses, not the string 'REFUNDED'"):
        list(api.sales(product_id=PRODUCT, start=JAN_1, end=MAR_1, statuses="REFUNDED"))
    with pytest.raises(ValueError, match="a timezone-aware datetime"):
        list(api.subscriptions(product_id=PRODUCT, accession_from=datetime(2026, 1, 1)))


def test_an_unreadable_reply_and_a_looping_cursor_are_errors():
    replies = iter([httpx.Response(200, text="<html>maintenance</html>")])
    api = mock_api(lambda request: next(replies))
    with pytest.raises(Unavailable, match="HTTP 200 with an unreadable body"):
        list(api.subscriptions(product_id=PRODUCT, accession_from=JAN_1))
    looping = mock_api(lambda request: page("A", next_token="same"))
    with pytest.raises(Unavailable, match="the same page token twice"):
        list(looping.subscriptions(product_id=PRODUCT, accession_from=JAN_1))
