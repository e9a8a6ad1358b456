"""The Alerts view: the list and its filters agree with the admin API's, the text is redacted as
the API's is, and acknowledging an alert takes a confirmation, the CSRF token and leaves a
history row with the operator's name and note."""

from __future__ import annotations

import copy
import re

import pytest
from sqlalchemy import func, select

from engine.db.models import Alert, Event, History
from tests.conftest import ADMIN_TOKEN, HOTTOK, load_payload
from tests.web.conftest import csrf_of

pytestmark = pytest.mark.integration


def _purchase(email: str, envelope: str) -> dict:
    body = copy.deepcopy(load_payload("purchase_approved.json"))
    body["id"] = envelope
    body["data"]["buyer"]["email"] = email
    return body


def add_alert(h, message: str = "something broke", *, kind: str = "rules.alert", event_id: int | None = None, **fields):
    """An alert as the pipeline stores one (about the event's student when ``event_id`` is given); its id."""
    with h.runtime.sessions.begin() as session:
        student_id = session.scalar(select(Event.student_id).where(Event.id == event_id)) if event_id else None
        alert = Alert(
            kind=kind,
            message=message,
            event_id=event_id,
            student_id=student_id,
            created_at=h.clock.now,
            last_seen_at=h.clock.now,
            notified="skipped",
            **fields,
        )
        session.add(alert)
        session.flush()
        return alert.id


def rows(html: str) -> list[str]:
    """The list's rows, each row's message cell."""
    return re.findall(r'<td class="message">(.*?)</td>', html, flags=re.DOTALL)


def test_open_alerts_newest_first_with_their_student_and_event(h, signed_in):
    event_id = h.deliver(_purchase("bia@example.com", "al-1"))
    add_alert(h, "older, about nobody", kind="reconcile.drift")
    add_alert(h, "newer, about Bia", event_id=event_id)
    add_alert(h, "already read", acknowledged_at=h.clock.now)
    html = signed_in.get("/ui/alerts").text
    assert rows(html) == ["newer, about Bia", "older, about nobody"]
    assert 'href="/ui/students/bia%40example.com"' in html and f'href="/ui/events/{event_id}"' in html
    assert "open" in html and "Acknowledge…" in html


def test_the_list_agrees_with_the_admin_api_and_hides_the_hottok(h, signed_in):
    add_alert(h, f"webhook refused: hottok={HOTTOK} was sent")
    api = signed_in.get("/admin/alerts", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).json()
    html = signed_in.get("/ui/alerts").text
    assert HOTTOK not in html
    assert rows(html) == [api["items"][0]["message"]] and "[redacted]" in rows(html)[0]


def test_filters_by_status_kind_cause_and_student(h, signed_in):
    event_id = h.deliver(_purchase("caio@example.com", "al-2"))
    add_alert(h, "caio step failed", kind="rules.alert", event_id=event_id)
    add_alert(h, "drift", kind="reconcile.drift", group_key="reconcile")
    add_alert(h, "read drift", kind="reconcile.drift", group_key="reconcile", acknowledged_at=h.clock.now)
    add_alert(h, "another cause", kind="reconcile.drift", group_key="other")

    assert rows(signed_in.get("/ui/alerts?status=acknowledged").text) == ["read drift"]
    assert len(rows(signed_in.get("/ui/alerts?status=all").text)) == 4
    assert rows(signed_in.get("/ui/alerts?kind=rules.alert").text) == ["caio step failed"]
    assert rows(signed_in.get("/ui/alerts?status=all&group=reconcile").text) == ["read drift", "drift"]
    assert rows(signed_in.get("/ui/alerts?email=CAIO@example.com").text) == ["caio step failed"]
    assert rows(signed_in.get("/ui/alerts?email=nobody@example.com").text) == []
    page = signed_in.get("/ui/alerts?kind=&email=&group=").text  # an empty filter field filters nothing
    assert len(rows(page)) == 3
    assert '<option value="reconcile.drift">' in page and '<option value="rules.alert">' in page


def test_pages_of_fifty(h, signed_in):
    for number in range(55):
        add_alert(h, f"alert number {number}")
    first = signed_in.get("/ui/alerts").text
    assert len(rows(first)) == 50 and rows(first)[0] == "alert number 54"
    assert "1–50 of 55" in first and 'href="?offset=50"' in first
    second = signed_in.get("/ui/alerts?offset=50").text
    assert rows(second) == [f"alert number {n}" for n in range(4, -1, -1)]
    assert "51–55 of 55" in second and 'rel="prev"' in second and 'rel="next"' not in second


def test_acknowledging_shows_what_it_does_then_writes_the_operator_and_the_note(h, signed_in):
    event_id = h.deliver(_purchase("duda@example.com", "al-3"))
    alert_id = add_alert(h, "duda's tag failed", event_id=event_id)
    confirmation = signed_in.get(f"/ui/alerts/{alert_id}")
    assert confirmation.status_code == 200
    assert "duda&#39;s tag failed" in confirmation.text and "leaves the open list" in confirmation.text
    done = signed_in.post(
        f"/ui/alerts/{alert_id}/acknowledge",
        data={"csrf_token": csrf_of(confirmation.text), "note": "fixed the tag in ManyChat"},
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"] == f"/ui/alerts/{alert_id}"
    with h.runtime.sessions() as session:
        assert session.get(Alert, alert_id).acknowledged_at == h.clock.now
        entry = session.scalar(select(History).where(History.kind == "alert_acknowledged"))
    assert entry.actor == "admin:ana" and entry.event_id == event_id and entry.student_id is not None
    assert entry.detail == {
        "alert_id": alert_id,
        "alert_kind": "rules.alert",
        "count": 1,
        "note": "fixed the tag in ManyChat",
    }
    after = signed_in.get(f"/ui/alerts/{alert_id}").text
    assert "acknowledged" in after and 'action="/ui/alerts/' not in after  # no second form
    assert rows(signed_in.get("/ui/alerts").text) == []


def test_acknowledging_without_the_csrf_token_is_refused_and_changes_nothing(h, signed_in):
    alert_id = add_alert(h)
    refused = signed_in.post(f"/ui/alerts/{alert_id}/acknowledge", data={"note": "x"}, follow_redirects=False)
    assert refused.status_code == 403
    forged = signed_in.post(f"/ui/alerts/{alert_id}/acknowledge", data={"csrf_token": "forged"})
    assert forged.status_code == 403
    with h.runtime.sessions() as session:
        assert session.get(Alert, alert_id).acknowledged_at is None
        assert (
            session.scalar(select(func.count()).select_from(History).where(History.kind == "alert_acknowledged")) == 0
        )


def test_an_unknown_alert_is_a_404_page(signed_in):
    assert signed_in.get("/ui/alerts/999").status_code == 404
    token = csrf_of(signed_in.get("/ui/alerts").text)
    missing = signed_in.post("/ui/alerts/999/acknowledge", data={"csrf_token": token})
    assert missing.status_code == 404 and "does not exist" in missing.text


@pytest.mark.parametrize(
    "path",
    [
        "/ui/alerts?status=closed",
        "/ui/alerts?offset=-1",
        "/ui/alerts?offset=99999999999999999999999",
        "/ui/alerts?kind=" + "k" * 61,
        "/ui/alerts?email=" + "a" * 321,
        "/ui/alerts?email=a%00b",
        "/ui/alerts/0",
        "/ui/alerts/9007199254740992",
        "/ui/alerts/abc",
    ],
)
def test_hostile_parameters_answer_the_422_page(signed_in, path):
    response = signed_in.get(path)
    assert response.status_code == 422 and "cannot read" in response.text


def test_a_note_longer_than_the_limit_is_a_422_page_and_changes_nothing(h, signed_in):
    alert_id = add_alert(h)
    token = csrf_of(signed_in.get("/ui/alerts").text)
    response = signed_in.post(f"/ui/alerts/{alert_id}/acknowledge", data={"csrf_token": token, "note": "n" * 1001})
    assert response.status_code == 422
    with h.runtime.sessions() as session:
        assert session.get(Alert, alert_id).acknowledged_at is None


def test_the_alerts_speak_portuguese(h, signed_in):
    add_alert(h)
    html = signed_in.get("/ui/alerts", headers={"Accept-Language": "pt-BR"}).text
    assert "Alertas" in html and "aberto" in html and "Reconhecer…" in html
