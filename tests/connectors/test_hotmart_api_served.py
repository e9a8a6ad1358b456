"""The Hotmart API client against the fake Hotmart API served over real HTTP: the token kept and
renewed, 1,000 subscriptions over 3 pages within the rate limit, injected 429s, windows narrowed
on 502, and the same answers as the in-memory reader. One clock (FakeTime) is shared by the client
and the fake, so every wait the rate limit imposes is counted without being spent."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from connectors.errors import Unauthorized
from connectors.hotmart_api import SALES_HISTORY, SUBSCRIPTIONS, HotmartApi
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
EPOCH = datetime(2020, 1, 1, tzinfo=UTC)
PRODUCT = "4242001"


@pytest.fixture
def time_() -> FakeTime:
    return FakeTime()


@pytest.fixture
def fake(time_: FakeTime) -> FakeHotmartApi:
    return FakeHotmartApi(store=HotmartStore(now=lambda: NOW), clock=time_.clock)


@pytest.fixture
def url(fake: FakeHotmartApi) -> Iterator[str]:
    with serve(create_app(fake)) as base:
        yield base


def client(url: str, time_: FakeTime, *, secret: str = CLIENT_SECRET, **options) -> HotmartApi:
    return HotmartApi(
        CLIENT_ID,
        secret,
        basic_token(CLIENT_ID, secret),
        auth_url=f"{url}{TOKEN_PATH}",
        api_base=url,
        sleep=time_.sleep,
        clock=time_.clock,
        now=lambda: NOW,
        **options,
    )


def seed_subscriptions(store: HotmartStore, count: int) -> None:
    for number in range(count):
        accession = NOW - timedelta(days=300) + timedelta(minutes=7 * number)
        store.add_subscription(PRODUCT, f"aluno{number:04d}@example.com", accession=accession, sale=False)


def test_one_token_serves_every_read_until_shortly_before_it_expires(url, fake, time_):
    fake.token_seconds = 600
    api = client(url, time_)
    for _ in range(3):
        list(api.subscriptions(product_id=PRODUCT))
    assert fake.tokens_issued == 1
    time_.sleep(301)  # within 5 minutes of its end: renewed before use, not after a 401
    list(api.subscriptions(product_id=PRODUCT))
    assert fake.tokens_issued == 2
    assert api.wire.requests == 2 + 4  # two tokens, four reads: no refused request


def test_a_refused_token_is_replaced_once_then_the_read_fails(url, fake, time_):
    api = client(url, time_)
    fake.store.add_subscription(PRODUCT, "ana@example.com")
    list(api.subscriptions(product_id=PRODUCT))
    fake.expire_tokens()
    assert [item["subscriber"]["email"] for item in api.subscriptions(product_id=PRODUCT)] == ["ana@example.com"]
    assert fake.tokens_issued == 2
    fake.fail(401, times=2, body={"error": "invalid_token", "error_description": "Invalid access token"})
    with pytest.raises(Unauthorized, match="Hotmart refused the token \\(HTTP 401: invalid_token; Invalid access"):
        list(api.subscriptions(product_id=PRODUCT))
    assert fake.tokens_issued == 3  # one renewal, not a loop


def test_1000_subscriptions_over_3_pages_with_injected_429s_and_no_failure(url, fake, time_):
    seed_subscriptions(fake.store, 1000)
    fake.fail(429, SUBSCRIPTIONS, times=4)
    api = client(url, time_, page_size=400)

    items = list(api.subscriptions(product_id=PRODUCT, accession_from=EPOCH))

    assert len({item["subscriber_code"] for item in items}) == len(items) == 1000
    assert fake.rate_limited == 4
    pages = fake.queries(SUBSCRIPTIONS)
    assert [len(query.get("page_token", [])) for query in pages] == [0, 1, 1]
    # A full scan never falls into Hotmart's 30-day default: every page names the accession date.
    assert all(query["accession_date"] == ["1577836800000"] for query in pages)
    assert len(time_.slept) == 4  # each 429 waited out (RateLimit-Reset), then asked again


def test_the_budget_in_the_headers_paces_the_reads_before_any_429(url, fake, time_):
    seed_subscriptions(fake.store, 1000)
    fake.limit = 3  # a minute's budget of 3 reads instead of 500
    api = client(url, time_, page_size=100)

    items = list(api.subscriptions(product_id=PRODUCT, accession_from=EPOCH))

    assert len(items) == 1000
    assert fake.rate_limited == 0  # waited for the reset each time the budget was spent
    assert len(fake.queries(SUBSCRIPTIONS)) == 10
    assert time_.now >= 3 * 60  # ten reads at three a minute
    assert api.wire.waited == sum(time_.slept)


def test_a_window_too_wide_for_hotmart_is_read_in_halves(url, fake, time_):
    for number in range(40):
        sale = fake.store.add_sale(PRODUCT, f"c{number}@example.com", approved=NOW - timedelta(days=9 * number))
        if number % 3 == 0:
            fake.store.set_sale_status(sale["purchase"]["transaction"], "REFUNDED")
    fake.widest_window = timedelta(days=45)
    api = client(url, time_)

    sales = list(api.sales(product_id=PRODUCT, start=NOW - timedelta(days=365), end=NOW, statuses=["REFUNDED"]))

    assert sorted(sale["buyer"]["email"] for sale in sales) == sorted(f"c{n}@example.com" for n in range(0, 40, 3))
    answered = fake.queries(SALES_HISTORY)
    assert all(int(q["end_date"][0]) - int(q["start_date"][0]) <= 45 * 86_400_000 for q in answered)
    spans = sorted((int(q["start_date"][0]), int(q["end_date"][0])) for q in answered)
    assert all(later[0] == earlier[1] + 1 for earlier, later in zip(spans, spans[1:], strict=False))  # no gap


def test_the_client_answers_every_query_as_the_in_memory_reader(url, fake, time_):
    store = fake.store
    seed_subscriptions(store, 30)
    late = store.add_subscription(PRODUCT, "late@example.com", accession=NOW - timedelta(days=2), status="DELAYED")
    gone = store.add_subscription(PRODUCT, "gone@example.com", accession=NOW - timedelta(days=200))
    store.set_subscription_status(gone["subscriber_code"], "CANCELLED_BY_SELLER", at=NOW - timedelta(days=3))
    store.add_subscription("999", "other@example.com", accession=NOW - timedelta(days=1))
    refunded = store.add_sale(PRODUCT, "refund@example.com", approved=NOW - timedelta(days=20))
    store.set_sale_status(refunded["purchase"]["transaction"], "REFUNDED")
    store.add_sale(PRODUCT, "complete@example.com", status="COMPLETE", approved=NOW - timedelta(days=10))
    api, memory = client(url, time_, page_size=7), InMemoryHotmart(store)
    sub_queries = [
        {},
        {"accession_from": EPOCH},
        {"accession_from": EPOCH, "statuses": ["DELAYED", "CANCELLED_BY_SELLER"]},
        {"accession_from": EPOCH, "cancelled_from": NOW - timedelta(days=7), "cancelled_to": NOW},
        {"accession_from": NOW - timedelta(days=250), "accession_to": NOW - timedelta(days=100)},
        {"accession_from": EPOCH, "subscriber_email": late["subscriber"]["email"]},
    ]
    for query in sub_queries:
        got = list(api.subscriptions(product_id=PRODUCT, **query))
        assert got == list(memory.subscriptions(product_id=PRODUCT, **query)), query
    window = {"start": NOW - timedelta(days=400), "end": NOW}
    sale_queries = [
        {},
        {"statuses": ["REFUNDED", "COMPLETE"]},
        {"transaction": refunded["purchase"]["transaction"]},
        {"buyer_email": "complete@example.com"},
    ]
    for query in sale_queries:
        got = list(api.sales(product_id=PRODUCT, **window, **query))
        assert got == list(memory.sales(product_id=PRODUCT, **window, **query)), query
    # Hotmart's default, the last 30 days: only the late one (the cancelled one joined 200 days ago).
    assert [item["subscriber"]["email"] for item in api.subscriptions(product_id=PRODUCT)] == ["late@example.com"]


def test_check_and_secrets_kept_out_of_every_log_line(url, fake, time_, caplog):
    caplog.set_level(logging.DEBUG)
    api = client(url, time_)
    fake.store.add_subscription(PRODUCT, "ana@example.com")
    assert api.check() == f"token obtained and 1 subscription(s) of the last 30 days read at {url}"
    fake.expire_tokens()
    fake.fail(503, SUBSCRIPTIONS)
    with pytest.raises(Exception) as failed:  # noqa: PT011 - the secrets are the point
        api.check()
    wrong = client(url, time_, secret="not-the-secret-0123")
    with pytest.raises(Unauthorized) as refused:
        wrong.check()
    issued = list(fake.tokens)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "hotmart: token refused" in logged and "client_secret=***" in logged
    for text in (logged, str(failed.value), str(refused.value)):
        for secret in (CLIENT_SECRET, basic_token(), "not-the-secret-0123", *issued):
            assert secret not in text
