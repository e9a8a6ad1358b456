"""The worker's sync (engine/catchup/schedule.py): only when enabled, what HOTMART_SYNC_APPLY allows,
one hotmart.drift alert for what it leaves, one hotmart.sync_failed when Hotmart cannot be read."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from connectors.errors import Unauthorized
from engine.catchup import scheduled_run
from engine.db.models import Alert, Event, SyncRun
from tests.catchup.test_sync import ANA, CURSO, buy, link
from tests.fakes.hotmart_store import HotmartStore, InMemoryHotmart

CREDENTIALS = {"hotmart_client_id": "id", "hotmart_client_secret": "secret", "hotmart_basic": "basic"}


@pytest.fixture
def enabled(make_harness):
    def make(**overrides):
        h = make_harness(hotmart_sync_enabled=True, **CREDENTIALS, **overrides)
        return h, HotmartStore(now=h.clock)

    return make


def alerts(h, kind: str) -> list[Alert]:
    with h.runtime.sessions() as session:
        return list(session.scalars(select(Alert).where(Alert.kind == kind)))


def test_nothing_runs_while_the_sync_is_off(make_harness):
    h = make_harness()
    called = []
    assert scheduled_run(h.runtime, lambda settings: called.append(settings)) is None
    assert called == []
    with h.runtime.sessions() as session:
        assert session.scalars(select(SyncRun)).all() == []


def test_a_report_leaves_one_drift_alert_counted_while_open(enabled):
    h, store = enabled()
    sale = buy(h, store)
    link(h)
    store.set_sale_status(sale["purchase"]["transaction"], "REFUNDED")
    store.add_sale(CURSO, "bia@example.com", approved=h.clock() - timedelta(days=1))
    run_id = scheduled_run(h.runtime, lambda settings: InMemoryHotmart(store))
    [alert] = alerts(h, "hotmart.drift")
    assert alert.message == (
        f"Hotmart sync run {run_id} found changes no webhook brought and left them (HOTMART_SYNC_APPLY=none): "
        "curso: 1 PURCHASE_APPROVED, 1 PURCHASE_REFUNDED (e.g. "
        f"{ANA}: PURCHASE_REFUNDED (curso, HP0000000000101, REFUNDED): active -> refunded). "
        "See engine sync hotmart --last; engine sync hotmart --apply applies them."
    )
    with h.runtime.sessions() as session:
        assert session.scalars(select(Event).where(Event.origin.is_not(None))).all() == []
    assert scheduled_run(h.runtime, lambda settings: InMemoryHotmart(store)) is None  # minutes later: skipped
    h.clock.advance(hours=6)
    scheduled_run(h.runtime, lambda settings: InMemoryHotmart(store))
    [alert] = alerts(h, "hotmart.drift")  # the same open alert, counted
    assert alert.count == 2


def test_grants_are_stored_and_the_rest_is_left_in_the_alert(enabled):
    h, store = enabled(hotmart_sync_apply="grants")
    sale = buy(h, store)
    link(h)
    store.set_sale_status(sale["purchase"]["transaction"], "REFUNDED")
    store.add_sale(CURSO, "bia@example.com", approved=h.clock() - timedelta(days=1))
    run_id = scheduled_run(h.runtime, lambda settings: InMemoryHotmart(store))
    with h.runtime.sessions() as session:
        [event] = session.scalars(select(Event).where(Event.origin == "hotmart-api")).all()
        run = session.get(SyncRun, run_id)
    assert (event.type, event.email) == ("PURCHASE_APPROVED", "bia@example.com")
    assert (run.trigger, run.mode, run.status, run.applied["left"]) == ("schedule", "grants", "applied", 1)
    [alert] = alerts(h, "hotmart.drift")
    assert "(HOTMART_SYNC_APPLY=grants): curso: 1 PURCHASE_REFUNDED (e.g." in alert.message


def test_everything_stored_leaves_no_alert(enabled):
    h, store = enabled(hotmart_sync_apply="all")
    store.add_sale(CURSO, "bia@example.com", approved=h.clock() - timedelta(days=1))
    scheduled_run(h.runtime, lambda settings: InMemoryHotmart(store))
    assert alerts(h, "hotmart.drift") == []


def test_hotmart_unreadable_is_one_alert_and_a_failed_run(enabled):
    h, store = enabled()

    class Refused(InMemoryHotmart):
        def subscriptions(self, **query):
            raise Unauthorized("hotmart.unauthorized", "Hotmart refused the API credentials (HTTP 401: invalid_client)")

    closed = []
    Refused.close = lambda self: closed.append(True)
    assert scheduled_run(h.runtime, lambda settings: Refused(store)) is None
    [alert] = alerts(h, "hotmart.sync_failed")
    assert alert.message == (
        "Hotmart sync could not read Hotmart's API (hotmart.unauthorized: Hotmart refused the API credentials "
        "(HTTP 401: invalid_client)). Webhooks missed meanwhile are not caught up. Run `engine doctor --hotmart`, "
        "fix what it names, then `engine sync hotmart`."
    )
    assert closed == [True]
    with h.runtime.sessions() as session:
        assert session.scalars(select(SyncRun.status)).all() == ["failed"]
