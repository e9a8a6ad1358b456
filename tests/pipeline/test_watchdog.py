"""A stuck student is noticed and freed (issue 21): old open events and idle student locks raise
one grouped alert (pipeline.stuck); a lock held idle past STUCK_LOCK_SECONDS is freed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from engine.api.app import create_app
from engine.db.locks import Namespace
from engine.db.models import Alert, Event
from engine.db.stuck import find_stuck
from engine.pipeline.intake import store_webhook
from engine.pipeline.watchdog import ALERT_KIND, watch
from engine.sources.hotmart import SOURCE as HOTMART
from tests.conftest import load_payload, rewriting_event_log, wait_until


def stuck_alerts(h) -> list[Alert]:
    with h.runtime.sessions() as session:
        return list(session.scalars(select(Alert).where(Alert.kind == ALERT_KIND)))


def store(h, email: str, status: str) -> int:
    body = load_payload("purchase_approved.json")
    body["id"] = f"watchdog-{email}-{status}"
    body["data"]["buyer"]["email"] = email
    with h.runtime.sessions.begin() as session:
        event_id = store_webhook(HOTMART, session, json.dumps(body).encode(), {}, held=False).event_id
        session.execute(update(Event).where(Event.id == event_id).values(status=status))
    return event_id


def test_events_open_longer_than_stuck_after_seconds_are_stuck(make_harness):
    h = make_harness(stuck_after_seconds=120)
    old = store(h, "old@example.com", "processing")
    store(h, "waits.for.retry@example.com", "retrying")  # waiting by design
    store(h, "done@example.com", "processed")
    h.clock.now = datetime.now(UTC) + timedelta(seconds=60)
    assert not watch(h.runtime)
    assert stuck_alerts(h) == []

    h.clock.now = datetime.now(UTC) + timedelta(seconds=121)
    stuck = watch(h.runtime)
    assert (stuck.events, stuck.oldest_event_id) == (1, old)
    [alert] = stuck_alerts(h)
    assert alert.message.startswith(f"1 event(s) not finished 120 s after arriving (oldest: event {old},")

    watch(h.runtime)  # the next sweep: the same alert, counted
    [alert] = stuck_alerts(h)
    assert alert.count == 2


@pytest.fixture
def holder(pg):
    """A connection of "another worker" holding a student's lock and then doing nothing."""
    with psycopg.connect(pg.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as connection:
        connection.execute("SELECT pg_advisory_lock(%s, hashtext('idle@example.com'))", (int(Namespace.BUYER),))
        yield connection


def test_a_student_lock_held_by_an_idle_connection_is_stuck_then_freed(make_harness, holder):
    h = make_harness(stuck_after_seconds=1, stuck_lock_seconds=3600)
    pid = holder.info.backend_pid
    stuck = wait_until(lambda: watch(h.runtime), what="the idle lock")  # idle for a second
    assert [lock.pid for lock in stuck.idle_locks] == [pid]
    assert "1 student lock(s) held by an idle database connection" in stuck_alerts(h)[0].message
    holder.execute("SELECT 1")  # not past STUCK_LOCK_SECONDS: left alone

    h.runtime.settings.stuck_lock_seconds = 1
    wait_until(lambda: watch(h.runtime).idle_locks, what="the lock to be freed")
    with pytest.raises(psycopg.OperationalError):  # its connection was ended...
        holder.execute("SELECT 1")
    with h.runtime.sessions() as session:  # ...and the lock with it
        free = session.scalar(
            select(func.pg_try_advisory_lock(int(Namespace.BUYER), func.hashtext("idle@example.com")))
        )
        assert free is True
        assert find_stuck(session, h.runtime.settings, datetime.now(UTC)).idle_locks == []


def test_healthz_is_degraded_while_a_student_is_stuck(make_harness):
    h = make_harness(stuck_after_seconds=1)
    client = TestClient(create_app(h.runtime))
    assert client.get("/healthz").json()["stuck"] is None
    event_id = store(h, "old@example.com", "received")
    with h.runtime.sessions.begin() as session, rewriting_event_log(session):
        session.execute(
            update(Event).where(Event.id == event_id).values(received_at=datetime.now(UTC) - timedelta(minutes=5))
        )
    body = client.get("/healthz").json()
    assert body["status"] == "degraded"
    assert body["stuck"].startswith(f"1 event(s) not finished 1 s after arriving (oldest: event {event_id},")
