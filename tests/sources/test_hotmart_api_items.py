"""Hotmart's REST API items (the fake store's documented shape) read into the canonical events that
led to them: what `engine import-students --from hotmart` folds through the rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from engine.sources import HOTMART_API_ITEMS as ITEMS
from tests.fakes.hotmart_store import HotmartStore

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
PRODUCT = "2222222"


def store() -> HotmartStore:
    return HotmartStore(now=lambda: NOW)


def history(holding) -> list[tuple[str, datetime]]:
    return [(event.event_type, event.at) for event in holding.history]


def test_an_active_subscription_was_approved_at_its_accession():
    item = store().add_subscription(PRODUCT, "Ana@Example.com", accession=NOW - timedelta(days=40), name="Ana")
    holding = ITEMS.subscription(item, NOW)
    assert (holding.email, holding.name, holding.product_id, holding.status) == (
        "ana@example.com",
        "Ana",
        PRODUCT,
        "ACTIVE",
    )
    assert history(holding) == [("PURCHASE_APPROVED", NOW - timedelta(days=40))]
    fields = holding.history[0].fields
    assert fields["subscriber_code"] == item["subscriber_code"] and fields["transaction"] == item["transaction"]
    assert fields["date_next_charge"] == (NOW - timedelta(days=10)).isoformat()  # a monthly plan's next charge
    assert fields["source"] == "hotmart" and fields["is_test"] is False and fields["recurrence_number"] is None


def test_a_late_subscription_is_late_since_the_charge_that_failed():
    s = store()
    item = s.add_subscription(PRODUCT, "bia@example.com", accession=NOW - timedelta(days=100))
    late = s.set_subscription_status(item["subscriber_code"], "OVERDUE", date_next_charge=NOW - timedelta(days=3))
    assert history(ITEMS.subscription(late, NOW)) == [
        ("PURCHASE_APPROVED", NOW - timedelta(days=100)),
        ("PURCHASE_DELAYED", NOW - timedelta(days=3)),
    ]
    ahead = s.set_subscription_status(item["subscriber_code"], "DELAYED", date_next_charge=NOW + timedelta(days=2))
    assert history(ITEMS.subscription(ahead, NOW))[-1] == ("PURCHASE_DELAYED", NOW)  # no later than now


def test_a_cancelled_subscription_is_cancelled_now_with_its_last_day_of_access():
    s = store()
    item = s.add_subscription(PRODUCT, "carla@example.com", accession=NOW - timedelta(days=20))
    cancelled = s.set_subscription_status(
        item["subscriber_code"], "CANCELLED_BY_CUSTOMER", date_next_charge=NOW + timedelta(days=10)
    )
    holding = ITEMS.subscription(cancelled, NOW)
    assert history(holding) == [("PURCHASE_APPROVED", NOW - timedelta(days=20)), ("SUBSCRIPTION_CANCELLATION", NOW)]
    assert holding.paid_until == NOW + timedelta(days=10)
    assert holding.history[1].fields["date_next_charge"] == (NOW + timedelta(days=10)).isoformat()


def test_a_paid_sale_was_approved_and_keeps_its_offer():
    item = store().add_sale("1111111", "dora@example.com", status="COMPLETE", approved=NOW - timedelta(days=5))
    holding = ITEMS.sale(item)
    assert history(holding) == [("PURCHASE_APPROVED", NOW - timedelta(days=5))]
    assert holding.offer_code == "k2pasun0" and holding.transaction == item["purchase"]["transaction"]
    assert holding.reference == holding.transaction and holding.usable


def test_what_cannot_be_read_is_unusable_and_says_why():
    s = store()
    inactive = ITEMS.subscription(s.add_subscription(PRODUCT, "eva@example.com", status="INACTIVE"), NOW)
    assert inactive.history == () and not inactive.usable
    refunded = ITEMS.sale(s.add_sale("1111111", "fabi@example.com", status="REFUNDED"))
    assert refunded.history == () and not refunded.usable
    broken = ITEMS.subscription({"subscriber_code": "X1", "status": "ACTIVE", "subscriber": {"email": 42}}, NOW)
    assert not broken.usable and broken.reference == "X1"
    assert broken.problems == ("subscriber.email: expected a string, got a number", "accession_date: missing")
    assert ITEMS.subscription("not an object", NOW).usable is False


def test_a_buyers_active_subscription_counts_before_a_late_then_a_cancelled_one():
    s = store()
    old = s.add_subscription(PRODUCT, "gil@example.com", accession=NOW - timedelta(days=400))
    old = s.set_subscription_status(
        old["subscriber_code"], "CANCELLED_BY_SELLER", date_next_charge=NOW + timedelta(days=1)
    )
    late = s.add_subscription(PRODUCT, "gil@example.com", accession=NOW - timedelta(days=90))
    late = s.set_subscription_status(late["subscriber_code"], "DELAYED", date_next_charge=NOW - timedelta(days=1))
    active = s.add_subscription(PRODUCT, "gil@example.com", accession=NOW - timedelta(days=10))
    holdings = [ITEMS.subscription(item, NOW) for item in (old, late, active)]
    ranked = sorted(holdings, key=ITEMS.preference)
    assert [h.status for h in ranked] == ["ACTIVE", "DELAYED", "CANCELLED_BY_SELLER"]
    newer = ITEMS.sale(s.add_sale("1111111", "gil@example.com", approved=NOW - timedelta(days=1)))
    older = ITEMS.sale(s.add_sale("1111111", "gil@example.com", approved=NOW - timedelta(days=300)))
    assert min([older, newer], key=ITEMS.preference) is newer
