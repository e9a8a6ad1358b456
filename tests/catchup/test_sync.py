"""`engine sync hotmart` on the real PostgreSQL, reading the in-memory Hotmart account
(tests/fakes/hotmart_store.py): what it finds, how it dates and stores it, that the webhook coming
afterwards is a duplicate, the guard, the stored runs and where the next run starts reading."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from engine.catchup import Busy, run_sync
from engine.catchup.runs import FIRST_RUN, MARGIN, default_since, exclusive
from engine.db.models import Alert, Event, Grant, Membership, ScheduledEvent, SyncRun
from engine.db.webhooks import last_webhook_at
from engine.pipeline.intake import store_webhook
from engine.sources.hotmart import SOURCE as HOTMART
from tests.conftest import load_payload
from tests.fakes.hotmart_store import HotmartStore, InMemoryHotmart
from tests.pipeline.test_processing import link

CURSO, COMUNIDADE = "1111111", "2222222"
ANA = "ana.exemplo@example.com"
DISCORD_ID = "80351110224678912"
COURSE_ROLE = "1180000000000000001"


@pytest.fixture
def h(make_harness):
    return make_harness()


@pytest.fixture
def store(h) -> HotmartStore:
    return HotmartStore(now=h.clock)


def webhook(template: str, *, email: str, transaction: str, at: datetime, envelope: str, **purchase) -> dict:
    """A reference payload as Hotmart would send it for this buyer, purchase and date."""
    body = copy.deepcopy(load_payload(template))
    body["id"], body["creation_date"] = envelope, int(at.timestamp() * 1000)
    body["data"]["buyer"]["email"] = email
    body["data"]["purchase"]["transaction"] = transaction
    body["data"]["purchase"].update(purchase)
    return body


def buy(h, store: HotmartStore, email: str = ANA, *, days_ago: float = 5, transaction: str = "HP0000000000101") -> dict:
    """A purchase of the course approved at Hotmart and delivered as a webhook; the sale's item."""
    at = h.clock() - timedelta(days=days_ago)
    sale = store.add_sale(CURSO, email, transaction=transaction, approved=at)
    h.deliver(webhook("purchase_approved.json", email=email, transaction=transaction, at=at, envelope=f"ap-{email}"))
    return sale


def sync(h, store: HotmartStore, **options):
    return run_sync(h.runtime, InMemoryHotmart(store), **options)


def states(h) -> dict[tuple[str, str], str]:
    from engine.db.models import Student

    with h.runtime.sessions() as session:
        rows = session.execute(select(Student.email, Membership.product_key, Membership.state).join(Membership))
        return {(email, product): state for email, product, state in rows}


def synced_events(h) -> list[Event]:
    with h.runtime.sessions() as session:
        return list(session.scalars(select(Event).where(Event.origin == "hotmart-api").order_by(Event.id)))


def flows(h) -> list[str]:
    return [step.params["flow_ns"] for step, _ in h.manychat.calls if step.action == "trigger_flow"]


def test_a_refund_never_delivered_is_found_applied_once_and_its_webhook_is_a_duplicate(h, store):
    sale = buy(h, store)
    link(h)
    assert states(h) == {(ANA, "curso"): "active"}
    store.set_sale_status(sale["purchase"]["transaction"], "REFUNDED")

    run_id, report, stored = sync(h, store, mode="all")
    [finding] = report.findings
    assert (finding.event_type, finding.status, finding.effect) == ("PURCHASE_REFUNDED", "REFUNDED", "ends")
    assert (finding.from_state, finding.to_state, finding.product) == ("active", "refunded", "curso")
    assert report.counts() == {"curso": {"PURCHASE_REFUNDED": 1}}
    # Hotmart gives a refund no date: it comes right after the newest date known of the purchase.
    assert finding.occurred_at == datetime.fromtimestamp(sale["purchase"]["approved_date"] / 1000, UTC) + timedelta(
        milliseconds=1
    )
    [event] = synced_events(h)
    assert stored.events == [event.id] and stored.duplicates == 0 and not stored.held
    assert (event.source, event.type, event.status) == ("hotmart", "PURCHASE_REFUNDED", "received")
    assert event.change_key == f"hotmart:HP0000000000101:PURCHASE_REFUNDED:{ANA}"
    assert h.queued == [event.id]

    h.run_queue()  # the ordinary pipeline applies it, as the webhook
    assert states(h) == {(ANA, "curso"): "refunded"}
    flows_after = flows(h)
    assert flows_after.count("content20261101000000_000004") == 1  # the refund flow, once
    assert [s.action for s, _ in h.discord.calls].count("remove_role") == 1
    with h.runtime.sessions() as session:
        assert session.scalars(select(Grant)).all() == []

    # The refund's webhook arrives afterwards (its own envelope id): the same change, a duplicate.
    refund = webhook(
        "purchase_refunded.json", email=ANA, transaction="HP0000000000101", at=h.clock(), envelope="refund-late"
    )
    with h.runtime.sessions.begin() as session:
        late = store_webhook(HOTMART, session, json.dumps(refund).encode(), {}, held=False)
    assert late.duplicate and late.event_id is None and late.status == "processed"
    assert flows(h) == flows_after and [s.action for s, _ in h.discord.calls].count("remove_role") == 1

    # The next run knows it: nothing found, nothing stored.
    _, again, stored_again = sync(h, store, mode="all")
    assert again.findings == [] and stored_again is None
    with h.runtime.sessions() as session:
        runs = session.scalars(select(SyncRun).order_by(SyncRun.id)).all()
    assert [(r.id, r.status, r.trigger, r.mode) for r in runs] == [
        (run_id, "applied", "cli", "all"),
        (runs[1].id, "reported", "cli", "all"),
    ]


def test_an_approval_never_delivered_grants_and_the_late_webhook_is_a_duplicate(h, store):
    at = h.clock() - timedelta(days=2)
    store.add_sale(CURSO, "bia@example.com", transaction="HP0000000000202", approved=at, name="Bia Souza")
    _, report, stored = sync(h, store, mode="grants")
    [finding] = report.findings
    assert (finding.event_type, finding.effect, finding.from_state, finding.to_state) == (
        "PURCHASE_APPROVED",
        "grants",
        None,
        "pending_onboarding",
    )
    assert finding.occurred_at == at.replace(microsecond=0)  # Hotmart's own date
    h.run_queue()
    assert states(h) == {("bia@example.com", "curso"): "pending_onboarding"}
    assert flows(h) == ["content20261101000000_000001"]  # the onboarding flow, with a code
    [event] = synced_events(h)
    assert event.occurred_at == at.replace(microsecond=0) and event.email == "bia@example.com"
    body = webhook(
        "purchase_approved.json", email="bia@example.com", transaction="HP0000000000202", at=at, envelope="x"
    )
    with h.runtime.sessions.begin() as session:
        assert store_webhook(HOTMART, session, json.dumps(body).encode(), {}, held=False).duplicate
    assert stored.events == [event.id]


def test_a_report_changes_nothing_and_the_next_run_reads_from_as_far_back(h, store):
    store.add_sale(CURSO, "bia@example.com", approved=h.clock() - timedelta(days=1))
    run_id, report, stored = sync(h, store)
    assert len(report.findings) == 1 and stored is None and synced_events(h) == [] and h.queued == []
    with h.runtime.sessions() as session:
        run = session.get(SyncRun, run_id)
        assert (run.status, run.counts, run.applied) == ("reported", {"curso": {"PURCHASE_APPROVED": 1}}, None)
        assert run.since == h.clock() - FIRST_RUN
        # Its finding is left behind: the next run starts as far back.
        assert (
            default_since(session, "hotmart", h.clock() + timedelta(hours=6))
            == h.clock() + timedelta(hours=6) - FIRST_RUN
        )
    sync(h, store, mode="all")
    h.clock.advance(hours=6)
    with h.runtime.sessions() as session:  # the applied run left nothing: from its start, minus the margin
        assert default_since(session, "hotmart", h.clock()) == h.clock() - timedelta(hours=6) - MARGIN


def test_the_queries_name_every_status_and_an_explicit_accession_window(h, store):
    reader = InMemoryHotmart(store)
    run_sync(h.runtime, reader, since=h.clock() - timedelta(days=3))
    subscriptions = [q for kind, q in reader.queries if kind == "subscriptions"]
    assert {q["product_id"] for q in subscriptions} == {CURSO, COMUNIDADE, "3333333"}
    assert all(q["accession_from"] == datetime(2011, 1, 1, tzinfo=UTC) and q["statuses"] == () for q in subscriptions)
    sales = [q for kind, q in reader.queries if kind == "sales" and q["product_id"] == CURSO]
    assert [(set(q["statuses"]), q["start"]) for q in sales] == [
        ({"APPROVED", "COMPLETE", "OVERDUE", "CANCELLED"}, h.clock() - timedelta(days=3)),
        ({"REFUNDED", "CHARGEBACK", "PROTESTED"}, h.clock() - timedelta(days=3 + 180)),
    ]


def test_a_cancellation_never_delivered_keeps_the_paid_period(h, store):
    at = h.clock() - timedelta(days=10)
    subscription = store.add_subscription(COMUNIDADE, ANA, accession=at, transaction="HP0000000000301")
    first = webhook(
        "purchase_approved_subscription_first.json",
        email=ANA,
        transaction="HP0000000000301",
        at=at,
        envelope="sub-1",
    )
    first["data"]["subscription"]["subscriber"]["code"] = subscription["subscriber_code"]
    h.deliver(first)
    link(h)
    assert states(h) == {(ANA, "comunidade"): "active"}
    access_end = h.clock() + timedelta(days=20)
    store.set_subscription_status(subscription["subscriber_code"], "CANCELLED_BY_CUSTOMER", date_next_charge=access_end)

    _, report, stored = sync(h, store, mode="all")
    [finding] = report.findings
    assert (finding.event_type, finding.status, finding.effect, finding.to_state) == (
        "SUBSCRIPTION_CANCELLATION",
        "CANCELLED_BY_CUSTOMER",
        "ends",
        "cancelled",
    )
    h.run_queue()
    assert states(h) == {(ANA, "comunidade"): "cancelled"}
    with h.runtime.sessions() as session:
        [timer] = session.scalars(select(ScheduledEvent).where(ScheduledEvent.event_type == "ACCESS_ENDS")).all()
    assert abs(timer.due_at - access_end) < timedelta(seconds=1)  # the access end Hotmart gives
    # Its webhook, arriving afterwards, is the same change.
    cancellation = copy.deepcopy(load_payload("subscription_cancellation.json"))
    cancellation["id"] = "cancel-late"
    cancellation["data"]["subscriber"].update({"code": subscription["subscriber_code"], "email": ANA})
    cancellation["data"]["date_next_charge"] = int(access_end.timestamp() * 1000)
    with h.runtime.sessions.begin() as session:
        assert store_webhook(HOTMART, session, json.dumps(cancellation).encode(), {}, held=False).duplicate


def test_a_cancellation_stored_before_change_keys_is_known_by_its_body(h, store, monkeypatch):
    at = h.clock() - timedelta(days=10)
    subscription = store.add_subscription(COMUNIDADE, ANA, accession=at)
    end = h.clock() + timedelta(days=5)
    store.set_subscription_status(subscription["subscriber_code"], "CANCELLED_BY_SELLER", date_next_charge=end)
    cancellation = copy.deepcopy(load_payload("subscription_cancellation.json"))
    cancellation["data"]["subscriber"].update({"code": subscription["subscriber_code"], "email": ANA})
    cancellation["data"]["date_next_charge"] = int(end.timestamp() * 1000)
    with monkeypatch.context() as before_0017:  # stored as the engine did before change keys
        before_0017.setattr(HOTMART, "change_key", lambda body: None)
        h.deliver(cancellation)
    with h.runtime.sessions() as session:
        assert session.scalars(select(Event.change_key)).all() == [None]
    _, report, _ = sync(h, store)
    assert [f.event_type for f in report.findings] == ["PURCHASE_APPROVED"]  # its first payment, not seen


def test_changes_for_nobody_here_or_no_product_are_passed_over(h, store):
    store.add_sale(CURSO, "old@example.com", status="REFUNDED", approved=h.clock() - timedelta(days=3))
    store.add_sale("9999999", "other@example.com", approved=h.clock() - timedelta(days=3))  # no rule claims it
    _, report, _ = sync(h, store)
    assert report.findings == []
    assert dict(report.passed_over) == {"of buyers with no membership of the product here": 1}
    assert "9999999" not in report.read  # never asked for


def test_a_chargeback_of_an_old_sale_is_read_from_further_back(h, store):
    sale = buy(h, store, days_ago=100)
    store.set_sale_status(sale["purchase"]["transaction"], "CHARGEBACK")
    _, report, _ = sync(h, store)  # sales since 60 days ago; chargebacks since 240
    assert [(f.event_type, f.effect) for f in report.findings] == [("PURCHASE_CHARGEBACK", "ends")]


def test_the_guard_holds_mass_revocations_until_confirmed(h, store):
    sales = [buy(h, store, f"s{i}@example.com", transaction=f"HP00000000009{i:02}") for i in range(11)]
    for sale in sales:
        store.set_sale_status(sale["purchase"]["transaction"], "REFUNDED")
    run_id, report, stored = sync(h, store, mode="all")
    assert stored.held and stored.limit == 10 and stored.events == [] and synced_events(h) == []
    with h.runtime.sessions() as session:
        [alert] = session.scalars(select(Alert).where(Alert.kind == "hotmart.sync_guard")).all()
        assert session.get(SyncRun, run_id).status == "held"
    assert alert.message.startswith(
        f"Hotmart sync (run {run_id}) stopped at the blast-radius guard: 11 change(s) that end access across "
        "11 student(s), more than 10 allowed without confirmation"
    )
    assert "`engine sync hotmart --apply --confirm`" in alert.message
    _, _, stored = sync(h, store, mode="all", confirm=True)
    assert len(stored.events) == 11 and not stored.held
    # Grants only: nothing that ends access is stored, and nothing is held.
    sale = buy(h, store, "late@example.com", transaction="HP0000000000999")
    store.set_sale_status(sale["purchase"]["transaction"], "REFUNDED")
    _, report, stored = sync(h, store, mode="grants")
    assert (len(report.findings), stored.events, stored.left, stored.held) == (1, [], 1, False)


def test_synced_events_are_not_webhooks_for_the_silence_check(h, store):
    sale = buy(h, store, days_ago=3)
    with h.runtime.sessions() as session:
        before = last_webhook_at(session, "hotmart")
    store.set_sale_status(sale["purchase"]["transaction"], "REFUNDED")
    h.clock.advance(days=2)
    sync(h, store, mode="all")
    with h.runtime.sessions() as session:
        assert last_webhook_at(session, "hotmart") == before
        assert session.scalar(select(Event.received_at).where(Event.origin == "hotmart-api")) == h.clock()


def test_a_run_after_the_silence_alert_says_how_many_changes_it_hid(h, store):
    from engine import alert_texts
    from engine.pipeline.silence import alert_webhook_silence

    at = h.clock() - timedelta(days=3)
    sale = store.add_sale(CURSO, ANA, transaction="HP0000000000101", approved=at)
    approval = webhook("purchase_approved.json", email=ANA, transaction="HP0000000000101", at=at, envelope="ap")
    with h.runtime.sessions.begin() as session:  # received as the harness's clock says
        stored = store_webhook(HOTMART, session, json.dumps(approval).encode(), {}, held=False, received_at=at)
    h.queued.append(stored.event_id)
    h.run_queue()
    h.clock.advance(days=2)
    assert alert_webhook_silence(h.runtime)
    store.set_sale_status(sale["purchase"]["transaction"], "REFUNDED")
    store.add_sale(CURSO, "bia@example.com", approved=h.clock() - timedelta(hours=5))
    run_id, _, _ = sync(h, store)
    with h.runtime.sessions() as session:
        [alert] = session.scalars(select(Alert).where(Alert.kind == "webhooks.silent")).all()
    assert alert.message.startswith(alert_texts.no_webhooks_opening("Hotmart"))
    assert alert.message.endswith(
        f" Since then, engine sync hotmart (run {run_id}) found 2 change(s) the silence hid: "
        "curso: 1 PURCHASE_APPROVED, 1 PURCHASE_REFUNDED (engine sync hotmart --last lists them)."
    )
    assert alert.notified is None  # posted again
    run_id, _, _ = sync(h, store, mode="all")  # the next run's word replaces the last one's
    with h.runtime.sessions() as session:
        message = session.scalars(select(Alert.message).where(Alert.kind == "webhooks.silent")).one()
    assert message.count("Since then") == 1 and f"(run {run_id})" in message


def test_one_run_at_a_time(h, store):
    with exclusive(h.runtime), pytest.raises(Busy):
        sync(h, store)


def test_a_failed_read_is_stored_as_failed(h, store):
    from connectors.errors import Unavailable

    class Down(InMemoryHotmart):
        def subscriptions(self, **query):
            raise Unavailable("hotmart.unavailable", "HTTP 503")

    with pytest.raises(Unavailable):
        run_sync(h.runtime, Down(store))
    with h.runtime.sessions() as session:
        run = session.scalars(select(SyncRun)).one()
    assert run.status == "failed" and run.error == "Unavailable: hotmart.unavailable: HTTP 503"


def test_after_an_import_from_hotmart_the_sync_finds_nothing_that_would_change_anything(h, store):
    from engine.service.hotmart_import import import_from_hotmart

    now = h.clock()
    store.add_subscription(COMUNIDADE, "ana@example.com", accession=now - timedelta(days=50))
    renewed = store.add_subscription(COMUNIDADE, "bia@example.com", accession=now - timedelta(days=45))
    store.renew_subscription(renewed["subscriber_code"], approved=now - timedelta(days=15))
    late = store.add_subscription(COMUNIDADE, "carla@example.com", accession=now - timedelta(days=40))
    store.set_subscription_status(late["subscriber_code"], "DELAYED", date_next_charge=now - timedelta(days=2))
    paid = store.add_subscription(COMUNIDADE, "eva@example.com", accession=now - timedelta(days=20))
    store.set_subscription_status(
        paid["subscriber_code"], "CANCELLED_BY_CUSTOMER", date_next_charge=now + timedelta(days=10)
    )
    store.add_sale(CURSO, "ines@example.com", status="COMPLETE", approved=now - timedelta(days=12))
    imported = import_from_hotmart(h.runtime, InMemoryHotmart(store))
    assert not imported.errors
    h.clock.advance(hours=1)

    _, report, _ = sync(h, store)
    assert {(f.email, f.event_type, f.effect) for f in report.findings} == {
        ("eva@example.com", "SUBSCRIPTION_CANCELLATION", "none")  # placed cancelled already: its rules ignore it
    }
    assert report.passed_over["dated before the membership was imported (the import read them)"] == 1  # bia's renewal
