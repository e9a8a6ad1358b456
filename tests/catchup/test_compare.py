"""The comparison alone (engine/catchup/compare.py): what the in-memory Hotmart account shows
against what the engine knows, given by hand; no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from engine.catchup.compare import findings
from engine.catchup.known import Known, MembershipView
from engine.catchup.observe import observe
from engine.catchup.report import Report
from engine.lifecycle.planner import Planner
from engine.sources.hotmart import SOURCE as HOTMART
from tests.conftest import shipped_rules
from tests.fakes.hotmart_store import HotmartStore, InMemoryHotmart

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
SINCE = NOW - timedelta(days=60)
ANA = "ana@example.com"


@pytest.fixture(scope="module")
def planner() -> Planner:
    return Planner(shipped_rules())


@pytest.fixture
def store() -> HotmartStore:
    return HotmartStore(now=lambda: NOW)


def compare(store: HotmartStore, planner: Planner, known: Known | None = None) -> Report:
    observed = observe(HOTMART.api, InMemoryHotmart(store), ["1111111", "2222222"], since=SINCE, until=NOW)
    report = Report("Hotmart", SINCE, NOW)
    findings(HOTMART, shipped_rules(), planner, observed, known or Known(), report, NOW)
    return report


def member(product: str, state: str, *, last: datetime | None = None, email: str = ANA) -> dict:
    return {(email, product): MembershipView(1, email, "Ana", "123", product, state, last)}


def test_an_approval_the_engine_never_saw_is_news_dated_by_hotmart(store, planner):
    approved = NOW - timedelta(days=2)
    store.add_sale("1111111", ANA, transaction="HP1", approved=approved)
    [finding] = compare(store, planner).findings
    assert (finding.event_type, finding.effect, finding.to_state, finding.occurred_at) == (
        "PURCHASE_APPROVED",
        "grants",
        "pending_onboarding",
        approved,
    )
    assert finding.body["creation_date"] == int(approved.timestamp() * 1000)


@pytest.mark.parametrize(
    "known",
    [
        Known(purchase_events={("HP1", "PURCHASE_APPROVED")}),  # its webhook (stored before change keys)
        Known(purchase_events={("HP1", "PURCHASE_COMPLETE")}),  # its completion: it was granted
        Known(transactions={"HP1"}),  # an imported membership names it
        Known(change_keys={"hotmart:HP1:PURCHASE_APPROVED:ana@example.com"}),
    ],
)
def test_an_approval_the_engine_knows_is_not(store, planner, known):
    store.add_sale("1111111", ANA, transaction="HP1", approved=NOW - timedelta(days=2))
    assert compare(store, planner, known).findings == []


def test_a_refund_is_news_only_for_a_buyer_with_a_membership(store, planner):
    store.add_sale("1111111", ANA, status="REFUNDED", transaction="HP1", approved=NOW - timedelta(days=9))
    report = compare(store, planner)
    assert report.findings == [] and report.passed_over == {"of buyers with no membership of the product here": 1}

    newest = NOW - timedelta(days=8)  # its approval's webhook, a day after Hotmart approved it
    known = Known(purchase_events={("HP1", "PURCHASE_APPROVED")}, newest={"HP1": newest})
    known.memberships = member("curso", "active", last=newest)
    [finding] = compare(store, planner, known).findings
    assert (finding.event_type, finding.effect, finding.from_state, finding.to_state) == (
        "PURCHASE_REFUNDED",
        "ends",
        "active",
        "refunded",
    )
    assert finding.occurred_at == newest + timedelta(milliseconds=1)  # right after the newest known of it


def test_a_change_the_rules_ignore_now_changes_nothing(store, planner):
    store.add_sale("1111111", ANA, status="REFUNDED", transaction="HP1", approved=NOW - timedelta(days=9))
    known = Known(purchase_events={("HP1", "PURCHASE_APPROVED")})
    known.memberships = member("curso", "refunded")  # a chargeback took it already
    [finding] = compare(store, planner, known).findings
    assert (finding.effect, finding.to_state) == ("none", None)
    assert "changes nothing now (refunded)" in finding.line()


def test_a_cancellation_follows_the_membership_and_the_payments_found_with_it(store, planner):
    item = store.add_subscription("2222222", ANA, accession=NOW - timedelta(days=40))
    renewal = store.renew_subscription(item["subscriber_code"], approved=NOW - timedelta(days=10))
    ends = NOW + timedelta(days=20)
    store.set_subscription_status(item["subscriber_code"], "CANCELLED_BY_SELLER", date_next_charge=ends)
    known = Known(purchase_events={(item["transaction"], "PURCHASE_APPROVED")})
    known.memberships = member("comunidade", "overdue", last=NOW - timedelta(days=15))
    report = compare(store, planner, known)
    assert [(f.event_type, f.transaction) for f in report.findings] == [
        ("PURCHASE_APPROVED", renewal["purchase"]["transaction"]),  # the renewal, never seen
        ("SUBSCRIPTION_CANCELLATION", None),
    ]
    renewal_found, cancellation = report.findings
    assert (renewal_found.from_state, renewal_found.to_state) == ("overdue", "active")  # renewed while overdue
    assert renewal_found.body["data"]["purchase"]["date_next_charge"] is not None
    # After the renewal found with it (newer than the membership's last event).
    assert cancellation.occurred_at == NOW - timedelta(days=10) + timedelta(milliseconds=1)
    assert cancellation.effect == "ends" and cancellation.to_state == "cancelled"
    assert cancellation.body["data"]["date_next_charge"] == int(ends.timestamp() * 1000)
    assert report.counts() == {"comunidade": {"PURCHASE_APPROVED": 1, "SUBSCRIPTION_CANCELLATION": 1}}


def test_a_change_hotmart_gives_no_date_of_is_never_dated_after_now(store, planner):
    store.add_sale("1111111", ANA, status="CHARGEBACK", transaction="HP1", approved=NOW - timedelta(days=30))
    known = Known(purchase_events={("HP1", "PURCHASE_APPROVED")}, newest={"HP1": NOW + timedelta(days=1)})
    known.memberships = member("curso", "active")
    [finding] = compare(store, planner, known).findings
    assert finding.occurred_at == NOW


def test_findings_are_in_creation_order(store, planner):
    for days, email in ((3, "c@example.com"), (9, "a@example.com"), (5, "b@example.com")):
        store.add_sale("1111111", email, approved=NOW - timedelta(days=days))
    assert [f.email for f in compare(store, planner).findings] == ["a@example.com", "b@example.com", "c@example.com"]


def test_dated_changes_older_than_an_imported_membership_were_read_by_the_import(store, planner):
    item = store.add_subscription("2222222", ANA, accession=NOW - timedelta(days=40))
    store.renew_subscription(item["subscriber_code"], approved=NOW - timedelta(days=10))
    imported = NOW - timedelta(days=5)  # placed by an import, no webhook since
    known = Known(transactions={item["transaction"]})
    known.memberships = {
        (ANA, "comunidade"): MembershipView(1, ANA, "Ana", None, "comunidade", "overdue", None, created_at=imported)
    }
    report = compare(store, planner, known)
    assert report.findings == []
    assert report.passed_over == {"dated before the membership was imported (the import read them)": 1}
    renewal = store.renew_subscription(item["subscriber_code"], approved=NOW - timedelta(days=1))  # after it
    [finding] = compare(store, planner, known).findings
    assert (finding.transaction, finding.from_state, finding.to_state) == (
        renewal["purchase"]["transaction"],
        "overdue",
        "active",
    )
