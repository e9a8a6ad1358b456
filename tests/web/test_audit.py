"""The Audit view: what people did, newest first, filtered by who (one actor, or every operator of
the page), by kind and by student; never the worker's own entries."""

from __future__ import annotations

import copy
import re

import pytest
from sqlalchemy import func, select

from engine.db.models import Event, ReconcileRun
from engine.pipeline.history import record_history
from tests.conftest import load_payload
from tests.web.conftest import CAIO_OPERATOR, CAIO_SECRET, csrf_of, sign_in

pytestmark = pytest.mark.integration


def _purchase(email: str, envelope: str) -> dict:
    body = copy.deepcopy(load_payload("purchase_approved.json"))
    body["id"] = envelope
    body["data"]["buyer"]["email"] = email
    return body


def add_entry(h, kind: str, actor: str, *, event_id: int | None = None, detail: dict | None = None) -> None:
    with h.runtime.sessions.begin() as session:
        student_id = session.scalar(select(Event.student_id).where(Event.id == event_id)) if event_id else None
        record_history(
            session, kind=kind, at=h.clock.now, actor=actor, event_id=event_id, student_id=student_id, detail=detail
        )


def kinds_listed(html: str) -> list[str]:
    return re.findall(r"<td><strong>([^<]+)</strong>", html)


def actors_listed(html: str) -> list[str]:
    return re.findall(r"<td>[^<]+</td>\s*<td>([^<]+)</td>\s*<td><strong>", html)


def test_what_people_did_newest_first_with_note_detail_and_links(h, signed_in):
    event_id = h.deliver(_purchase("eva@example.com", "au-1"))
    add_entry(h, "replay", "cli", event_id=event_id, detail={"before": "needs_attention", "note": "after the fix"})
    add_entry(h, "step_done", "worker", event_id=event_id)  # the worker's own: not a person's
    html = signed_in.get("/ui/audit").text
    assert kinds_listed(html) == ["replay", "signed_in"]
    assert "step_done" not in html
    assert "before: needs_attention" in html and "after the fix" in html
    assert 'href="/ui/students/eva%40example.com"' in html and f'href="/ui/events/{event_id}"' in html


def test_filters_by_who_kind_and_student(h, browser):
    assert sign_in(browser, CAIO_OPERATOR, CAIO_SECRET).status_code == 303
    event_id = h.deliver(_purchase("gil@example.com", "au-2"))
    add_entry(h, "replay", "cli", event_id=event_id)
    add_entry(h, "code_requested", "admin-api")

    operators = browser.get("/ui/audit?who=admin:").text
    assert kinds_listed(operators) == ["signed_in"] and actors_listed(operators) == ["admin:caio"]
    assert kinds_listed(browser.get("/ui/audit?who=cli").text) == ["replay"]
    assert kinds_listed(browser.get("/ui/audit?who=admin").text) == []  # exact, not a prefix
    assert kinds_listed(browser.get("/ui/audit?kind=code_requested").text) == ["code_requested"]
    assert kinds_listed(browser.get("/ui/audit?email=GIL@example.com").text) == ["replay"]
    page = browser.get("/ui/audit?who=&kind=&email=").text
    assert len(kinds_listed(page)) == 3
    assert '<option value="admin-api">' in page and '<option value="cli">' in page
    assert '<option value="replay">' in page


def test_an_acknowledgement_on_the_page_is_in_the_audit_with_its_note(h, signed_in):
    from tests.web.test_alerts import add_alert

    alert_id = add_alert(h, "a failure")
    token = csrf_of(signed_in.get(f"/ui/alerts/{alert_id}").text)
    signed_in.post(f"/ui/alerts/{alert_id}/acknowledge", data={"csrf_token": token, "note": "known outage"})
    html = signed_in.get("/ui/audit?kind=alert_acknowledged").text
    assert kinds_listed(html) == ["alert_acknowledged"] and actors_listed(html) == ["admin:ana"]
    assert "known outage" in html and f"alert_id: {alert_id}" in html


def test_pages_of_fifty(h, signed_in):
    for number in range(54):
        add_entry(h, "replay", "cli", detail={"number": number})
    first = signed_in.get("/ui/audit").text  # 54 replays and ana's sign-in
    assert len(kinds_listed(first)) == 50 and "number: 53" in first and "1–50 of 55" in first
    second = signed_in.get("/ui/audit?offset=50").text
    assert kinds_listed(second) == ["replay"] * 4 + ["signed_in"] and "51–55 of 55" in second


@pytest.mark.parametrize(
    "query",
    ["offset=-1", "offset=1e3", "who=" + "w" * 101, "kind=" + "k" * 41, "email=%00", "email=" + "e" * 321],
)
def test_hostile_parameters_answer_the_422_page(signed_in, query):
    assert signed_in.get(f"/ui/audit?{query}").status_code == 422


def test_a_long_detail_is_cut_short(h, signed_in):
    add_entry(h, "imported", "cli", detail={"rows": "x" * 1000})
    html = signed_in.get("/ui/audit?kind=imported").text
    assert "x" * 280 in html and "x" * 300 not in html and "…" in html


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/ui/alerts"),
        ("GET", "/ui/alerts/1"),
        ("POST", "/ui/alerts/1/acknowledge"),
        ("GET", "/ui/audit"),
        ("GET", "/ui/reconcile"),
        ("POST", "/ui/reconcile/report"),
        ("GET", "/ui/reconcile/1"),
        ("GET", "/ui/reconcile/1/apply"),
        ("POST", "/ui/reconcile/1/apply"),
        ("GET", "/ui/rules"),
        ("GET", "/ui/rules/dry-run"),
        ("POST", "/ui/rules/dry-run"),
    ],
)
def test_every_route_of_the_operations_views_needs_a_session(h, browser, method, path):
    response = browser.request(method, path, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/ui/login?next=")
    with h.runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(ReconcileRun)) == 0
