"""The fake Hotmart API itself, over real HTTP: tokens, pages, filters and defaults, the rate limit
and the failures it injects (the client's tests rely on each)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from connectors.hotmart_api import SALES_HISTORY, SUBSCRIPTIONS, epoch_ms
from tests.fakes.hotmart_api_app import (
    CLIENT_ID,
    CLIENT_SECRET,
    TOKEN_PATH,
    FakeHotmartApi,
    FakeTime,
    basic_token,
    create_app,
)
from tests.fakes.hotmart_store import HotmartStore, InMemoryHotmart
from tests.fakes.server import serve

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
PRODUCT = "4242001"


@pytest.fixture
def time_() -> FakeTime:
    return FakeTime()


@pytest.fixture
def fake(time_: FakeTime) -> FakeHotmartApi:
    return FakeHotmartApi(store=HotmartStore(now=lambda: NOW), clock=time_.clock)


@pytest.fixture
def http(fake: FakeHotmartApi) -> Iterator[httpx.Client]:
    with serve(create_app(fake)) as url, httpx.Client(base_url=url) as client:
        yield client


def token_of(http: httpx.Client) -> str:
    reply = http.post(
        TOKEN_PATH,
        params={"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
        headers={"Authorization": f"Basic {basic_token()}"},
    )
    assert reply.status_code == 200, reply.text
    return reply.json()["access_token"]


def get(http: httpx.Client, path: str, token: str, **params) -> httpx.Response:
    return http.get(path, params=params, headers={"Authorization": f"Bearer {token}"})


def test_the_token_endpoint_checks_the_basic_token_and_the_credentials(http: httpx.Client, fake: FakeHotmartApi):
    good = {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    no_basic = http.post(TOKEN_PATH, params=good)
    wrong_secret = http.post(
        TOKEN_PATH, params={**good, "client_secret": "nope"}, headers={"Authorization": f"Basic {basic_token()}"}
    )
    assert no_basic.status_code == 401
    assert wrong_secret.status_code == 401 and wrong_secret.json()["error"] == "invalid_client"
    reply = http.post(TOKEN_PATH, params=good, headers={"Authorization": f"Basic {basic_token()}"})
    body = reply.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope", "jti"}
    assert body["expires_in"] == 172_800 and fake.tokens_issued == 1


def test_a_token_works_until_it_expires(http: httpx.Client, fake: FakeHotmartApi, time_: FakeTime):
    token = token_of(http)
    assert get(http, SUBSCRIPTIONS, token).status_code == 200
    assert get(http, SUBSCRIPTIONS, "invented").json() == {
        "error": "invalid_token",
        "error_description": "Invalid access token",
    }
    time_.sleep(fake.token_seconds)
    expired = get(http, SUBSCRIPTIONS, token)
    assert expired.status_code == 401 and expired.json()["error_description"] == "Access token expired"
    fresh = token_of(http)
    fake.expire_tokens()  # on demand: every token issued so far
    assert get(http, SUBSCRIPTIONS, fresh).status_code == 401


def test_pages_follow_the_cursor_and_an_invented_token_is_refused(http: httpx.Client, fake: FakeHotmartApi):
    for number in range(25):
        fake.store.add_subscription(PRODUCT, f"aluno{number}@example.com", accession=NOW - timedelta(days=2))
    token = token_of(http)
    seen, page_token, pages = [], None, 0
    while True:
        params = {"product_id": PRODUCT, "max_results": 10, **({"page_token": page_token} if page_token else {})}
        body = get(http, SUBSCRIPTIONS, token, **params).json()
        pages += 1
        seen += [item["subscriber"]["email"] for item in body["items"]]
        assert body["page_info"]["total_results"] == 25
        page_token = body["page_info"].get("next_page_token")
        if not page_token:
            break
    assert pages == 3 and seen == [f"aluno{number}@example.com" for number in range(25)]
    invented = get(http, SUBSCRIPTIONS, token, product_id=PRODUCT, page_token="0001deadbeef")
    first = get(http, SUBSCRIPTIONS, token, product_id=PRODUCT, max_results=10).json()
    foreign = get(http, SALES_HISTORY, token, page_token=first["page_info"]["next_page_token"])
    too_big = get(http, SUBSCRIPTIONS, token, max_results=501)
    assert [invented.status_code, foreign.status_code, too_big.status_code] == [400, 400, 400]
    assert invented.json()["error_description"] == "Invalid page_token"


def test_subscriptions_default_to_the_last_30_days_and_filter_repeated_statuses(
    http: httpx.Client, fake: FakeHotmartApi
):
    old = fake.store.add_subscription(PRODUCT, "antiga@example.com", accession=NOW - timedelta(days=200))
    fake.store.add_subscription(PRODUCT, "nova@example.com", accession=NOW - timedelta(days=3), status="DELAYED")
    fake.store.add_subscription("999", "outra@example.com", accession=NOW - timedelta(days=3))
    fake.store.set_subscription_status(old["subscriber_code"], "CANCELLED_BY_CUSTOMER", at=NOW - timedelta(days=1))
    token = token_of(http)

    def emails(**params) -> list[str]:
        reply = get(http, SUBSCRIPTIONS, token, product_id=PRODUCT, **params)
        assert reply.status_code == 200, reply.text
        return [item["subscriber"]["email"] for item in reply.json()["items"]]

    assert emails() == ["nova@example.com"]  # the 200-day-old one is outside Hotmart's default
    assert emails(accession_date=0) == ["antiga@example.com", "nova@example.com"]
    assert emails(accession_date=0, status=["CANCELLED_BY_CUSTOMER", "ACTIVE"]) == ["antiga@example.com"]
    assert emails(accession_date=0, cancelation_date=epoch_ms(NOW - timedelta(days=2))) == ["antiga@example.com"]
    assert emails(accession_date=0, subscriber_email="NOVA@example.com") == ["nova@example.com"]
    assert get(http, SUBSCRIPTIONS, token, status="CANCELLED_BY_BUYER").status_code == 400


def test_sales_without_a_status_are_approved_and_complete_only(http: httpx.Client, fake: FakeHotmartApi):
    refunded = fake.store.add_sale(PRODUCT, "reembolso@example.com", approved=NOW - timedelta(days=5))
    fake.store.set_sale_status(refunded["purchase"]["transaction"], "REFUNDED")
    fake.store.add_sale(PRODUCT, "paga@example.com", approved=NOW - timedelta(days=4))
    fake.store.add_sale(PRODUCT, "completa@example.com", status="COMPLETE", approved=NOW - timedelta(days=3))
    token = token_of(http)
    window = {"product_id": PRODUCT, "start_date": epoch_ms(NOW - timedelta(days=10)), "end_date": epoch_ms(NOW)}

    def buyers(**params) -> list[str]:
        reply = get(http, SALES_HISTORY, token, **window, **params)
        assert reply.status_code == 200, reply.text
        return [item["buyer"]["email"] for item in reply.json()["items"]]

    assert buyers() == ["paga@example.com", "completa@example.com"]
    assert buyers(transaction_status="REFUNDED") == ["reembolso@example.com"]
    assert buyers(transaction=refunded["purchase"]["transaction"]) == ["reembolso@example.com"]
    repeated = get(http, SALES_HISTORY, token, **window, transaction_status=["REFUNDED", "APPROVED"])
    assert repeated.status_code == 400


def test_the_rate_limit_counts_a_minute_and_says_so_in_headers(http: httpx.Client, fake: FakeHotmartApi, time_):
    fake.limit = 3
    token = token_of(http)
    replies = [get(http, SUBSCRIPTIONS, token) for _ in range(4)]
    assert [reply.status_code for reply in replies] == [200, 200, 200, 429]
    assert [reply.headers["RateLimit-Remaining"] for reply in replies] == ["2", "1", "0", "0"]
    assert replies[3].json()["error"] == "too_many_requests"
    assert replies[3].headers["RateLimit-Reset"] == "60" and replies[3].headers["X-RateLimit-Limit-Minute"] == "3"
    time_.sleep(45)
    assert get(http, SUBSCRIPTIONS, token).headers["RateLimit-Reset"] == "15"  # still the same minute: 429
    time_.sleep(15)
    again = get(http, SUBSCRIPTIONS, token)
    assert again.status_code == 200 and again.headers["RateLimit-Remaining"] == "2"
    assert fake.rate_limited == 2


def test_failures_and_too_wide_windows_on_demand(http: httpx.Client, fake: FakeHotmartApi):
    token = token_of(http)
    fake.fail(503, SALES_HISTORY, times=1)
    fake.fail(429, SUBSCRIPTIONS, headers={"Retry-After": "7"})
    window = {"start_date": epoch_ms(NOW - timedelta(days=90)), "end_date": epoch_ms(NOW)}
    assert get(http, SALES_HISTORY, token, **window).status_code == 503
    limited = get(http, SUBSCRIPTIONS, token)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "7"
    assert get(http, SALES_HISTORY, token, **window).status_code == 200  # each failure served its times
    fake.widest_window = timedelta(days=31)
    assert get(http, SALES_HISTORY, token, **window).status_code == 502
    narrow = {"start_date": epoch_ms(NOW - timedelta(days=30)), "end_date": epoch_ms(NOW)}
    assert get(http, SALES_HISTORY, token, **narrow).status_code == 200
    assert get(http, SUBSCRIPTIONS, token, accession_date=0).status_code == 502
    assert get(http, SUBSCRIPTIONS, token).status_code == 200  # the default 30 days fit


def test_the_control_endpoints_seed_the_account_for_another_process(http: httpx.Client, fake: FakeHotmartApi):
    added = http.post("/_fake/subscriptions", json={"product_id": PRODUCT, "email": "ctl@example.com"}).json()
    http.post("/_fake/failures", json={"status": 500, "times": 2})
    state = http.get("/_fake/state").json()
    assert [item["subscriber_code"] for item in state["subscriptions"]] == [added["subscriber_code"]]
    assert [sale["purchase"]["transaction"] for sale in state["sales"]] == [added["transaction"]]
    assert fake.failures[0]["status"] == 500 and fake.failures[0]["times"] == 2


def test_the_store_answers_the_in_memory_reader_as_the_wire_does():
    store = HotmartStore(now=lambda: NOW)
    reader = InMemoryHotmart(store)
    sub = store.add_subscription(PRODUCT, "ana@example.com", accession=NOW - timedelta(days=40))
    renewal = store.renew_subscription(sub["subscriber_code"], approved=NOW - timedelta(days=10))
    store.set_sale_status(sub["transaction"], "CHARGEBACK")
    assert list(reader.subscriptions(product_id=PRODUCT)) == []  # 40 days old: outside the default window
    found = list(reader.subscriptions(product_id=PRODUCT, accession_from=NOW - timedelta(days=365)))
    assert [item["subscriber_code"] for item in found] == [sub["subscriber_code"]]
    assert found[0]["date_next_charge"] == epoch_ms(NOW + timedelta(days=20))
    assert renewal["purchase"]["recurrency_number"] == 2
    window = {"product_id": PRODUCT, "start": NOW - timedelta(days=60), "end": NOW}
    assert [sale["purchase"]["transaction"] for sale in reader.sales(**window)] == [renewal["purchase"]["transaction"]]
    both = reader.sales(**window, statuses=["CHARGEBACK", "APPROVED"])
    assert [sale["purchase"]["status"] for sale in both] == ["CHARGEBACK", "APPROVED"]
    with pytest.raises(ValueError, match="'REEMBOLSADO' is not a Hotmart sale status"):
        list(reader.sales(**window, statuses=["REEMBOLSADO"]))
    assert reader.queries[0] == (
        "subscriptions",
        {
            "product_id": PRODUCT,
            "statuses": (),
            "accession_from": None,
            "accession_to": None,
            "cancelled_from": None,
            "cancelled_to": None,
            "subscriber_email": None,
        },
    )
