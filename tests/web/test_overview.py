"""The overview: what the day needs, in numbers that agree with the API's."""

from __future__ import annotations

import copy
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from engine.db.models import Event, Heartbeat, Membership
from engine.statuses import EventStatus
from tests.conftest import load_payload

pytestmark = pytest.mark.integration


def _purchase(email: str, envelope: str) -> dict:
    body = copy.deepcopy(load_payload("purchase_approved.json"))
    body["id"] = envelope
    body["data"]["buyer"]["email"] = email
    return body


def test_the_overview_counts_memberships_and_lists_the_oldest_waiting_student_first(h, signed_in):
    newer = h.deliver(_purchase("nova@example.com", "ov-1"))
    h.deliver(_purchase("antiga@example.com", "ov-2"))
    with h.runtime.sessions.begin() as session:
        session.execute(
            update(Membership).values(state_changed_at=h.clock.now - timedelta(days=h.runtime.settings.stuck_days + 2))
        )
        session.execute(
            update(Membership)
            .where(Membership.student_id == session.scalar(select(Event.student_id).where(Event.id == newer)))
            .values(state_changed_at=h.clock.now - timedelta(days=h.runtime.settings.stuck_days + 1))
        )
    html = signed_in.get("/ui/").text
    assert "pending_onboarding" in html
    assert html.index("antiga@example.com") < html.index("nova@example.com")
    assert 'href="/ui/students?stuck=1"' in html


def test_a_student_waiting_less_than_stuck_days_is_not_listed(h, signed_in):
    h.deliver(_purchase("recente@example.com", "ov-3"))
    assert "recente@example.com" not in signed_in.get("/ui/").text


def test_events_needing_attention_are_grouped_by_cause(h, signed_in):
    first = h.deliver(_purchase("a@example.com", "ov-4"))
    second = h.deliver(_purchase("b@example.com", "ov-5"))
    with h.runtime.sessions.begin() as session:
        session.execute(
            update(Event)
            .where(Event.id.in_([first, second]))
            .values(status=EventStatus.NEEDS_ATTENTION, reason="unknown product 999")
        )
    html = signed_in.get("/ui/").text
    row = html[html.index("unknown product 999") :]
    assert ">2<" in row[: row.index("</tr>")]


def test_a_stale_worker_and_a_silent_platform_are_written_out(h, signed_in):
    old = h.clock.now - timedelta(hours=2)
    with h.runtime.sessions.begin() as session:
        session.add(Heartbeat(name="worker:host:1", beat_at=old, started_at=old, rules_version="x"))
    html = signed_in.get("/ui/").text
    assert "worker:host:1" in html and "stale" in html
    assert "silent too long" in html  # no Hotmart webhook ever


def test_the_overview_speaks_portuguese_when_the_browser_asks(signed_in):
    html = signed_in.get("/ui/", headers={"Accept-Language": "pt-BR,pt;q=0.9,en;q=0.5"}).text
    assert "Visão geral" in html and '<html lang="pt-BR">' in html


def test_the_language_switch_wins_over_the_browser(signed_in):
    switched = signed_in.post("/ui/language", data={"language": "pt-BR", "back": "/ui/"}, follow_redirects=False)
    assert switched.status_code == 303 and switched.headers["location"] == "/ui/"
    html = signed_in.get("/ui/", headers={"Accept-Language": "en"}).text
    assert "Visão geral" in html
