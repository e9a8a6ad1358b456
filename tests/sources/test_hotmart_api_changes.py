"""Hotmart's API items read as the webhooks they stand for (engine/sources/hotmart/api_changes.py):
the body the parser reads as the webhook's, the same change key, and items that cannot be read."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

import pytest

from engine.sources.hotmart import SOURCE as HOTMART
from engine.sources.hotmart import parse
from engine.sources.hotmart.api_changes import LATE_STATUSES, SALE_EVENTS
from tests.conftest import load_payload
from tests.fakes.hotmart_store import HotmartStore

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
API = HOTMART.api


@pytest.fixture
def store() -> HotmartStore:
    return HotmartStore(now=lambda: NOW)


def test_every_sale_status_asked_for_is_one_a_webhook_brings():
    assert set(API.sale_statuses) | set(LATE_STATUSES) == set(SALE_EVENTS)
    assert {event for event, _ in SALE_EVENTS.values()} <= HOTMART.events
    # Without a status the history shows only APPROVED and COMPLETE: the others are named.
    assert {"REFUNDED", "CHARGEBACK", "PROTESTED", "CANCELLED", "OVERDUE"} <= set(SALE_EVENTS)


@pytest.mark.parametrize(
    ("status", "event_type", "purchase_status"),
    [(status, event, purchase) for status, (event, purchase) in SALE_EVENTS.items()],
)
def test_a_sale_reads_as_the_webhook_of_its_status(store, status, event_type, purchase_status):
    approved = NOW - timedelta(days=3)
    item = store.add_sale("1111111", "Ana@Example.com", status=status, transaction="HP1", approved=approved)
    change = API.sale_change(item, {})
    assert (change.event_type, change.status, change.transaction, change.email) == (
        event_type,
        status,
        "HP1",
        "ana@example.com",
    )
    body = API.webhook(change, NOW)
    parsed = parse(body)
    assert parsed.problems == ()
    assert (parsed.event_type, parsed.product_id, parsed.email, parsed.transaction) == (
        event_type,
        "1111111",
        "ana@example.com",
        "HP1",
    )
    assert (parsed.purchase_status, parsed.offer_code, parsed.creation_date) == (purchase_status, "k2pasun0", NOW)
    assert HOTMART.change_key(body) == change.change_key == f"hotmart:HP1:{event_type}:ana@example.com"
    # Hotmart dates a charge (approved, overdue); a refund, a chargeback... it does not.
    assert (change.at is not None) == (status in ("APPROVED", "COMPLETE", "OVERDUE"))
    assert change.after == approved


def test_a_sale_carries_its_subscription_and_the_newest_payment_what_it_pays_for(store):
    subscription_item = store.add_subscription("2222222", "ana@example.com", accession=NOW - timedelta(days=40))
    subscription = API.subscription(subscription_item)
    renewal = store.renew_subscription(subscription.subscriber_code, approved=NOW - timedelta(days=10))
    change = API.sale_change(renewal, {("ana@example.com", "2222222"): subscription})
    paid_until = NOW + timedelta(days=20)
    parsed = parse(API.webhook(change, change.at, paid_until))
    assert (parsed.subscriber_code, parsed.recurrence_number, parsed.plan_id, parsed.plan_name) == (
        subscription.subscriber_code,
        2,
        "1001",
        "Plano mensal",
    )
    assert parsed.date_next_charge == paid_until


def test_a_cancelled_subscription_reads_as_its_cancellation_webhook(store):
    item = store.add_subscription("2222222", "ana@example.com", accession=NOW - timedelta(days=40))
    assert API.cancellation(API.subscription(item)) is None  # active: nothing to cancel
    ends = NOW + timedelta(days=5)
    cancelled = store.set_subscription_status(item["subscriber_code"], "CANCELLED_BY_CUSTOMER", date_next_charge=ends)
    subscription = API.subscription(cancelled)
    assert subscription.ended and subscription.access_until == ends
    change = API.cancellation(subscription)
    body = API.webhook(change, NOW)
    parsed = parse(body)
    assert parsed.problems == ()
    assert (parsed.event_type, parsed.subscriber_code, parsed.email, parsed.date_next_charge) == (
        "SUBSCRIPTION_CANCELLATION",
        item["subscriber_code"],
        "ana@example.com",
        ends,
    )
    # The reference cancellation webhook of the same subscription and access end: the same change.
    webhook = copy.deepcopy(load_payload("subscription_cancellation.json"))
    webhook["data"]["subscriber"].update({"code": item["subscriber_code"], "email": "ana@example.com"})
    webhook["data"]["date_next_charge"] = int(ends.timestamp() * 1000)
    assert HOTMART.change_key(webhook) == change.change_key == HOTMART.change_key(body)
    code = item["subscriber_code"]
    assert change.change_key == f"hotmart:{code}:SUBSCRIPTION_CANCELLATION:2026-03-07:ana@example.com"


def test_the_envelope_id_is_the_changes_own_never_hotmarts(store):
    item = store.add_sale("1111111", "ana@example.com", status="REFUNDED", transaction="HP1")
    first, again = (API.webhook(API.sale_change(item, {}), NOW + timedelta(hours=h)) for h in (0, 1))
    assert first["id"] == again["id"] and first["id"].startswith("hotmart-api-")


@pytest.mark.parametrize(
    "damage",
    [
        lambda item: item["buyer"].pop("email"),
        lambda item: item["buyer"].update(email="not an e-mail"),
        lambda item: item["purchase"].update(transaction=None),
        lambda item: item["purchase"].update(status="WAITING_PAYMENT"),
        lambda item: item.update(product=[]),
        lambda item: item["purchase"].update(transaction="x" * 65),
    ],
)
def test_a_sale_without_what_a_webhook_needs_is_not_read(store, damage):
    item = store.add_sale("1111111", "ana@example.com")
    damage(item)
    assert API.sale_change(item, {}) is None


@pytest.mark.parametrize("item", [None, [], "x", {"subscriber_code": "A"}, {"status": "ACTIVE", "product": {"id": 1}}])
def test_a_subscription_without_what_a_webhook_needs_is_not_read(item):
    assert API.subscription(item) is None


def test_change_keys_of_webhooks():
    approved = load_payload("purchase_approved.json")
    assert HOTMART.change_key(approved) == "hotmart:HP10000000000001:PURCHASE_APPROVED:ana.exemplo@example.com"
    others = ("purchase_complete.json", "switch_plan.json", "purchase_billet_printed.json", "club_first_access.json")
    for template in others:
        assert HOTMART.change_key(load_payload(template)) is None  # no change the API shows as a status
    assert HOTMART.change_key({**approved, "data": {}}) is None  # no transaction
    long = copy.deepcopy(approved)
    long["data"]["buyer"]["email"] = "a" * 200 + "@example.com"
    key = HOTMART.change_key(long)
    assert key.startswith("hotmart:sha256:") and len(key) <= 100
    for hostile in (None, [], "x", {"event": ["PURCHASE_APPROVED"]}, {"event": "PURCHASE_APPROVED", "data": []}):
        assert HOTMART.change_key(hostile) is None
