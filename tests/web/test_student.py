"""The student view (``/ui/students/{email}``): each section shows the student's data, and each action
previews without changing anything, then does its thing on a confirmed POST with CSRF, written to
the history with the operator and the note."""

from __future__ import annotations

import copy
import re
from datetime import timedelta
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import delete, func, select, update

from connectors.base import StepResult
from engine.api.app import create_app
from engine.db.models import (
    ActionRun,
    Alert,
    ClassEnrollment,
    Event,
    History,
    Membership,
    OnboardingToken,
    Student,
)
from tests.conftest import load_payload, rewriting_event_log
from tests.pipeline.test_processing import link
from tests.web.conftest import admin_users, csrf_of, sign_in

pytestmark = pytest.mark.integration

ANA = "ana.exemplo@example.com"
PAGE = f"/ui/students/{quote(ANA, safe='')}"
HTMX = {"HX-Request": "true"}
COURSE_ROLE = "1180000000000000001"


def _purchase(email: str = ANA, envelope: str = "st-1") -> dict:
    body = copy.deepcopy(load_payload("purchase_approved.json"))
    body["id"] = envelope
    body["data"]["buyer"]["email"] = email
    return body


def _count(h, model, *where) -> int:
    with h.runtime.sessions() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


def _history(h, kind: str) -> list[History]:
    with h.runtime.sessions() as session:
        return list(session.scalars(select(History).where(History.kind == kind).order_by(History.id)))


def _state(h) -> tuple[int, int, int, int]:
    """What an action changes: events, history rows, connector calls, queued events."""
    return (_count(h, Event), _count(h, History), len(h.discord.calls) + len(h.manychat.calls), len(h.queued))


def _csrf(client: TestClient) -> str:
    return csrf_of(client.get(PAGE).text)


# --- the sections ----------------------------------------------------------------------------------


def test_the_page_shows_who_the_memberships_the_access_and_the_timeline(h, signed_in):
    event_id = h.deliver(_purchase())
    with h.runtime.sessions.begin() as session, rewriting_event_log(session):  # received before its steps ran
        session.execute(update(Event).values(received_at=h.clock.now - timedelta(minutes=1)))
    response = signed_in.get(PAGE)
    assert response.status_code == 200
    html = response.text
    assert "<h1>Ana Exemplo Souza</h1>" in html
    assert ANA in html and "+5511999990001" in html and "not linked" in html
    memberships = html[html.index('id="memberships"') : html.index('id="access-title"')]
    assert "curso" in memberships and "pending_onboarding" in memberships and "HP10000000000001" in memberships
    assert "waiting for the Discord link" in memberships
    assert "Open /registrar codes" in memberships  # the purchase issued one; the code itself never shows
    with h.runtime.sessions() as session:
        codes = list(session.scalars(select(OnboardingToken.code)))
    assert codes and not any(code in html for code in codes)
    access = html[html.index('id="access"') : html.index('id="note-title"')]
    tag_row = _row(access, "aluno-curso")
    assert "ManyChat tag" in tag_row and tag_row.count("granted") == 2  # the rules want it, the ledger has it
    assert "not granted" in _row(access, COURSE_ROLE)  # no Discord account yet
    timeline = html[html.index('id="timeline-title"') :]
    assert f'href="/ui/events/{event_id}"' in timeline and "processed" in timeline
    assert timeline.index("trigger_flow") < timeline.index(f'href="/ui/events/{event_id}"')  # newest first


def _row(html: str, needle: str) -> str:
    """The table row holding ``needle``."""
    at = html.index(needle)
    return html[html.rindex("<tr", 0, at) : html.index("</tr>", at)]


def test_a_difference_between_the_ledger_and_the_rules_is_written_out(h, signed_in):
    h.deliver(_purchase())
    with h.runtime.sessions.begin() as session:
        session.execute(update(Membership).values(state="refunded"))  # the ledger still holds the tag
    access = signed_in.get(PAGE).text
    assert "granted, no longer allowed" in _row(access[access.index('id="access"') :], "aluno-curso")


def test_an_email_with_a_plus_is_found_through_its_encoded_path(h, signed_in):
    h.deliver(_purchase("ana+curso@example.com", "st-plus"))
    response = signed_in.get("/ui/students/ana%2Bcurso%40example.com")
    assert response.status_code == 200 and "ana+curso@example.com" in response.text
    assert 'action="/ui/students/ana%2Bcurso%40example.com/note"' in response.text


def test_an_unknown_student_or_an_event_of_someone_else_is_a_404_page(h, signed_in):
    assert signed_in.get("/ui/students/nobody%40example.com").status_code == 404
    other = h.deliver(_purchase("bia@example.com", "st-bia"))
    h.deliver(_purchase())
    response = signed_in.get(f"{PAGE}/replay?event={other}")
    assert response.status_code == 404 and "<html" in response.text
    assert signed_in.get(f"{PAGE}/code?product=combo").status_code == 404  # no combo membership


@pytest.mark.parametrize(
    "path",
    [
        f"{PAGE}/replay?event=99999999999999999999",
        f"{PAGE}/replay?event=-1",
        f"{PAGE}/retry?event=abc",
        f"{PAGE}/code?product=" + "x" * 5000,
        "/ui/students/" + "a" * 400,
        "/ui/students/ana%00x",
    ],
)
def test_hostile_addresses_answer_a_422_page(signed_in, path):
    response = signed_in.get(path)
    assert response.status_code == 422 and "<html" in response.text


def test_the_page_speaks_portuguese(h, signed_in):
    h.deliver(_purchase())
    html = signed_in.get(PAGE, headers={"Accept-Language": "pt-BR"}).text
    assert '<html lang="pt-BR">' in html
    assert "Matrículas" in html and "não vinculado" in html and "Linha do tempo" in html
    panel = signed_in.get(f"{PAGE}/code?product=curso", headers={**HTMX, "Accept-Language": "pt-BR"}).text
    assert "Enviar o novo código" in panel and "Por quê" in panel


def test_what_discord_and_manychat_hold_is_read_on_demand_and_a_disabled_connector_said_so(h, signed_in):
    h.deliver(_purchase())
    page = signed_in.get(PAGE).text
    assert 'hx-get="' + PAGE + '/access"' in page and "not read:" not in page
    before = _state(h)
    partial = signed_in.get(f"{PAGE}/access", headers=HTMX)
    assert partial.status_code == 200 and "<html" not in partial.text
    assert "not read: DISCORD_ENABLED is off" in partial.text
    assert "not read: MANYCHAT_ENABLED is off" in partial.text
    class_row = _row(partial.text, "curso-2026")
    assert "Class" in class_row and ">no<" in class_row.replace(" ", "")  # not enrolled: compared locally
    assert "the engine&#39;s own table, not the course platform&#39;s list (COURSE_WEBHOOK_ENABLED is off)" in (
        partial.text
    )
    assert _state(h) == before
    full = signed_in.get(f"{PAGE}/access")  # without JavaScript: a page of its own
    assert "<html" in full.text and "DISCORD_ENABLED is off" in full.text


# --- 1. a new code ---------------------------------------------------------------------------------


def test_a_new_code_is_previewed_then_sent_and_written_to_the_history(h, signed_in):
    h.deliver(_purchase())
    before = _state(h)
    preview = signed_in.get(f"{PAGE}/code?product=curso", headers=HTMX)
    assert preview.status_code == 200 and "<html" not in preview.text
    assert "code_requested" in preview.text and "issue_token" in preview.text and "trigger_flow" in preview.text
    assert "{token}" in preview.text  # no code is drawn by a preview
    assert _state(h) == before
    flows_before = h.manychat.actions_called().count("trigger_flow")
    codes_before = _count(h, OnboardingToken)

    done = signed_in.post(
        f"{PAGE}/code", data={"product": "curso", "note": "lost the WhatsApp message", "csrf_token": _csrf(signed_in)}
    )
    assert done.status_code == 200 and "A new code for curso was requested" in done.text
    (row,) = _history(h, "code_requested")
    assert row.actor == "admin:ana" and row.detail == {"product": "curso", "note": "lost the WhatsApp message"}
    assert h.queued == [row.event_id]
    h.run_queue()
    assert h.manychat.actions_called().count("trigger_flow") == flows_before + 1
    assert _count(h, OnboardingToken) == codes_before + 1
    assert "lost the WhatsApp message" in signed_in.get(PAGE).text  # in the timeline


def test_a_new_code_without_the_csrf_token_is_refused_and_nothing_is_done(h, signed_in):
    h.deliver(_purchase())
    before = _state(h)
    refused = signed_in.post(f"{PAGE}/code", data={"product": "curso", "csrf_token": "forged"})
    assert refused.status_code == 403
    assert signed_in.post(f"{PAGE}/code", data={"product": "curso"}).status_code == 403
    assert _state(h) == before


def test_the_preview_page_works_without_javascript(h, signed_in):
    h.deliver(_purchase())
    page = signed_in.get(f"{PAGE}/code?product=curso")
    assert page.status_code == 200 and "<html" in page.text
    assert f'action="{PAGE}/code"' in page.text and 'name="csrf_token"' in page.text


# --- 2. replay -------------------------------------------------------------------------------------


def test_an_event_is_replayed_after_its_dry_run(h, signed_in):
    event_id = h.deliver(_purchase())
    before = _state(h)
    preview = signed_in.get(f"{PAGE}/replay?event={event_id}", headers=HTMX)
    assert preview.status_code == 200
    assert "would make it processed" in preview.text and "new_purchase_while_onboarding" in preview.text
    assert _state(h) == before

    done = signed_in.post(
        f"{PAGE}/replay", data={"event": event_id, "note": "rules fixed", "csrf_token": _csrf(signed_in)}
    )
    assert done.status_code == 200 and "Replayed" in done.text
    (row,) = _history(h, "replay")
    assert row.actor == "admin:ana" and row.event_id == event_id and row.detail["note"] == "rules fixed"
    assert h.queued == [event_id]
    flows = h.manychat.actions_called().count("trigger_flow")
    h.run_queue()
    assert h.manychat.actions_called().count("trigger_flow") == flows + 1  # the onboarding again


def test_a_replay_without_the_csrf_token_is_refused(h, signed_in):
    event_id = h.deliver(_purchase())
    before = _state(h)
    assert signed_in.post(f"{PAGE}/replay", data={"event": event_id}).status_code == 403
    assert _state(h) == before


# --- 3. retry --------------------------------------------------------------------------------------


def _failed_link(h) -> int:
    h.deliver(_purchase())
    h.discord.results["add_role"] = [StepResult.failed("discord.forbidden", "hierarchy")]
    linked = link(h)
    with h.runtime.sessions() as session:
        assert session.get(Event, linked).status == "failed"
    return linked


def test_a_failed_step_is_retried_after_its_preview(h, signed_in):
    event_id = _failed_link(h)
    page = signed_in.get(PAGE).text
    assert f'aria-label="Retry event #{event_id}"' in page
    before = _state(h)
    preview = signed_in.get(f"{PAGE}/retry?event={event_id}", headers=HTMX)
    assert "add_role (now failed)" in preview.text and "discord.forbidden" in preview.text
    assert _state(h) == before

    done = signed_in.post(
        f"{PAGE}/retry", data={"event": event_id, "note": "role order fixed", "csrf_token": _csrf(signed_in)}
    )
    assert done.status_code == 200 and "Retry queued" in done.text
    (row,) = _history(h, "retry")
    assert row.actor == "admin:ana" and row.event_id == event_id
    assert row.detail["note"] == "role order fixed" and row.detail["previous_status"] == "failed"
    h.run_queue()
    with h.runtime.sessions() as session:
        assert session.get(Event, event_id).status == "processed"
    assert h.discord.actions_called().count("add_role") == 2


def test_a_retry_a_later_event_overtook_needs_force(h, signed_in):
    event_id = _failed_link(h)
    h.deliver(load_payload("purchase_refunded.json"))
    preview = signed_in.get(f"{PAGE}/retry?event={event_id}", headers=HTMX).text
    assert "Refused" in preview and f'action="{PAGE}/retry"' in preview and 'name="force"' in preview
    assert 'method="post"' not in preview
    forced = signed_in.get(f"{PAGE}/retry?event={event_id}&force=1", headers=HTMX).text
    assert "add_role" in forced and 'method="post"' in forced
    refused = signed_in.post(f"{PAGE}/retry", data={"event": event_id, "csrf_token": _csrf(signed_in)})
    assert refused.status_code == 409 and "Refused" in refused.text and not _history(h, "retry")


def test_a_retry_without_the_csrf_token_is_refused(h, signed_in):
    event_id = _failed_link(h)
    before = _state(h)
    assert signed_in.post(f"{PAGE}/retry", data={"event": event_id, "csrf_token": "x"}).status_code == 403
    assert _state(h) == before
    with h.runtime.sessions() as session:
        assert session.get(Event, event_id).status == "failed"


# --- 4. reconcile ----------------------------------------------------------------------------------


def _active_without_class(h) -> None:
    """Ana active and linked in curso, her class enrollment lost."""
    h.deliver(_purchase())
    link(h)
    with h.runtime.sessions.begin() as session:
        assert session.execute(delete(ClassEnrollment)).rowcount == 1


def test_reconcile_shows_this_students_diff_then_applies_it(h, signed_in):
    _active_without_class(h)
    before = _state(h)
    preview = signed_in.get(f"{PAGE}/reconcile", headers=HTMX)
    assert "Would grant (1)" in preview.text and "curso-2026" in preview.text
    assert "Would revoke" not in preview.text and 'name="confirm"' not in preview.text
    assert _state(h) == before

    done = signed_in.post(f"{PAGE}/reconcile", data={"note": "lost class", "csrf_token": _csrf(signed_in)})
    assert done.status_code == 200 and "1 grant(s) and 0 revocation(s)" in done.text
    (row,) = _history(h, "reconcile")
    assert row.actor == "admin:ana" and row.detail["note"] == "lost class"
    assert row.detail["steps"] == ["enroll curso-2026"]
    h.run_queue()
    assert _count(h, ClassEnrollment, ClassEnrollment.removed_at.is_(None)) == 1
    after = signed_in.get(f"{PAGE}/reconcile", headers=HTMX).text
    assert "Nothing to change" in after and 'method="post"' not in after


def test_reconcile_without_the_csrf_token_is_refused(h, signed_in):
    _active_without_class(h)
    before = _state(h)
    assert signed_in.post(f"{PAGE}/reconcile", data={"note": "x"}).status_code == 403
    assert _state(h) == before and _count(h, ClassEnrollment) == 0


@pytest.fixture
def strict(make_harness):
    """A harness whose reconcile guard lets no revocation through unconfirmed, and a signed-in client."""
    harness = make_harness(admin_users=SecretStr(admin_users()), reconcile_max_revokes=0)
    client = TestClient(create_app(harness.runtime))
    assert sign_in(client).status_code == 303
    return harness, client


def test_revocations_past_the_guard_are_named_and_need_the_box_ticked(strict):
    h, client = strict
    h.deliver(_purchase())
    link(h)
    with h.runtime.sessions.begin() as session:
        session.execute(update(Membership).values(state="refunded"))  # as if the refund's steps were lost
    preview = client.get(f"{PAGE}/reconcile", headers=HTMX).text
    assert "Would revoke (1)" in preview and "curso-2026" in preview
    assert "more than the 0 applied without confirmation" in preview and 'name="confirm"' in preview

    held = client.post(f"{PAGE}/reconcile", data={"note": "refund", "csrf_token": _csrf(client)})
    assert held.status_code == 409 and "Stopped at the guard" in held.text
    assert h.queued == [] and _count(h, Alert, Alert.kind == "reconcile.guard") == 1
    (row,) = _history(h, "reconcile")
    assert row.detail["held"] is True and row.actor == "admin:ana" and row.detail["note"] == "refund"

    done = client.post(f"{PAGE}/reconcile", data={"confirm": "1", "note": "read it", "csrf_token": _csrf(client)})
    assert done.status_code == 200 and "0 grant(s) and 1 revocation(s)" in done.text
    h.run_queue()
    assert _count(h, ClassEnrollment, ClassEnrollment.removed_at.is_(None)) == 0
    assert _count(h, ClassEnrollment, ClassEnrollment.removed_at.is_not(None)) == 1  # the tombstone


# --- 5. a note -------------------------------------------------------------------------------------


def test_a_note_is_kept_in_the_history_and_shown_in_the_timeline(h, signed_in):
    h.deliver(_purchase())
    done = signed_in.post(f"{PAGE}/note", data={"note": "called her\non WhatsApp\x07", "csrf_token": _csrf(signed_in)})
    assert done.status_code == 200 and "Note saved" in done.text
    (row,) = _history(h, "note")
    assert row.actor == "admin:ana" and row.detail == {"note": "called her\non WhatsApp"}
    with h.runtime.sessions() as session:
        assert row.student_id == session.scalar(select(Student.id).where(Student.email == ANA))
    timeline = done.text[done.text.index('id="timeline-title"') :]
    assert "called her" in timeline and "admin:ana" in timeline


def test_a_note_needs_text_and_the_csrf_token(h, signed_in):
    h.deliver(_purchase())
    assert signed_in.post(f"{PAGE}/note", data={"note": "hi", "csrf_token": "forged"}).status_code == 403
    assert signed_in.post(f"{PAGE}/note", data={"note": "   ", "csrf_token": _csrf(signed_in)}).status_code == 422
    too_long = signed_in.post(f"{PAGE}/note", data={"note": "x" * 5000, "csrf_token": _csrf(signed_in)})
    assert too_long.status_code == 422
    assert not _history(h, "note")


def test_the_forms_carry_labels_and_no_inline_script_or_style(h, signed_in):
    h.deliver(_purchase())
    for html in (
        signed_in.get(PAGE).text,
        signed_in.get(f"{PAGE}/code?product=curso").text,
        signed_in.get(f"{PAGE}/reconcile").text,
    ):
        assert "style=" not in html and not re.search(r"<script(?![^>]*\bsrc=)", html)
        for control in re.findall(r'<textarea id="([^"]+)"', html):
            assert f'<label for="{control}"' in html
        assert '<th scope="col">' in html or "<table" not in html


def test_steps_and_their_attempts_are_listed(h, signed_in):
    _failed_link(h)
    with h.runtime.sessions() as session:
        failed = session.scalar(select(ActionRun).where(ActionRun.status == "failed"))
    html = signed_in.get(PAGE).text
    assert failed is not None and f"attempts: {failed.attempts}" in html and "discord.forbidden" in html


# --- post, redirect, get -----------------------------------------------------------------------------


def test_an_action_redirects_to_the_page_and_a_refresh_sends_nothing_again(h, signed_in):
    h.deliver(_purchase())
    sent = signed_in.post(
        f"{PAGE}/code", data={"product": "curso", "csrf_token": _csrf(signed_in)}, follow_redirects=False
    )
    assert sent.status_code == 303 and sent.headers["location"].startswith(f"{PAGE}?done=")
    landed = signed_in.get(sent.headers["location"])
    assert "A new code for curso was requested" in landed.text
    before = _state(h)
    assert "A new code for curso was requested" in signed_in.get(sent.headers["location"]).text  # the refresh
    assert _state(h) == before and len(_history(h, "code_requested")) == 1


def test_an_outcome_in_the_address_shows_only_if_this_session_signed_it(h, signed_in, browser):
    h.deliver(_purchase())
    sent = signed_in.post(
        f"{PAGE}/note", data={"note": "called her", "csrf_token": _csrf(signed_in)}, follow_redirects=False
    )
    location = sent.headers["location"]
    assert "Note saved in the history." in signed_in.get(location).text
    payload, signature = location.split("done=", 1)[1].rsplit(".", 1)
    altered = f"{PAGE}?done={payload}.{signature[:-1]}{'0' if signature[-1] != '0' else '1'}"
    assert "Note saved in the history." not in signed_in.get(altered).text
    other = TestClient(signed_in.app)  # another operator's session: the same link says nothing there
    assert sign_in(other, "caio", "another long passphrase").status_code == 303
    page = other.get(location)
    assert page.status_code == 200 and "Note saved in the history." not in page.text
