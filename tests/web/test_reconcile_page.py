"""The Reconcile view: stored runs, a report run from the page, and applying one through the
blast-radius guard exactly as ``engine reconcile --apply [--confirm] [--grants-only]`` does.

The harness's connectors are recording ones (no Discord member list, no ManyChat tags): reconcile
compares the course's classes, which live in the database, and says what it could not compare."""

from __future__ import annotations

import re
import zlib

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from engine.db.models import (
    Alert,
    ClassEnrollment,
    CourseClass,
    Event,
    Grant,
    History,
    Membership,
    ReconcileRun,
    Student,
)
from engine.pipeline.classes import enroll_student
from engine.reconcile import RECONCILE_EVENT
from engine.reconcile.runs import exclusive
from tests.web.conftest import admin_users, csrf_of

pytestmark = pytest.mark.integration

CLASS = "curso-2026"  # the class the shipped rules' curso grants while active
GUARD = 2  # RECONCILE_MAX_REVOKES here: three revocations are over it


@pytest.fixture
def h(make_harness):
    return make_harness(admin_users=SecretStr(admin_users()), reconcile_max_revokes=GUARD)


def student(h, email: str, state: str, *, enrolled: bool, granted: bool) -> int:
    """A student of curso in ``state``, linked to Discord; in the class or not, by the engine's grant or not."""
    with h.runtime.sessions.begin() as session:
        row = Student(email=email, discord_id=str(10**17 + zlib.crc32(email.encode())))
        session.add(row)
        session.flush()
        membership = Membership(student_id=row.id, product_key="curso", state=state)
        session.add(membership)
        session.flush()
        if enrolled:
            enroll_student(session, row.id, CLASS)
        if granted:
            session.add(Grant(student_id=row.id, membership_id=membership.id, kind="class", resource=CLASS))
        return row.id


def refunded(h, count: int, first: int = 0) -> list[str]:
    """``count`` refunded students still in the class the engine gave them: revocations."""
    emails = [f"reembolso{n}@example.com" for n in range(first, first + count)]
    for email in emails:
        student(h, email, "refunded", enrolled=True, granted=True)
    return emails


def enrolled(h) -> set[str]:
    with h.runtime.sessions() as session:
        return set(
            session.scalars(
                select(Student.email)
                .join(ClassEnrollment, ClassEnrollment.student_id == Student.id)
                .join(CourseClass, CourseClass.id == ClassEnrollment.class_id)
                .where(CourseClass.key == CLASS, ClassEnrollment.removed_at.is_(None))
            )
        )


def count(h, model, *where) -> int:
    with h.runtime.sessions() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


def report(client, note: str = "") -> int:
    """Runs a report from the page; the stored run's id."""
    token = csrf_of(client.get("/ui/reconcile").text)
    done = client.post("/ui/reconcile/report", data={"csrf_token": token, "note": note}, follow_redirects=False)
    assert done.status_code == 303, done.text
    return int(done.headers["location"].rsplit("/", 1)[1])


def test_a_report_from_the_page_is_stored_and_shown_with_what_it_could_not_compare(h, signed_in):
    assert "No run stored yet." in signed_in.get("/ui/reconcile").text
    student(h, "nova@example.com", "active", enrolled=False, granted=False)
    refunded(h, 1)
    run_id = report(signed_in, note="after the class migration")

    with h.runtime.sessions() as session:
        run = session.get(ReconcileRun, run_id)
        assert (run.trigger, run.mode, run.status) == ("page", "report", "reported")
        entry = session.scalar(select(History).where(History.kind == "reconcile_reported"))
    assert entry.actor == "admin:ana" and entry.detail["run_id"] == run_id
    assert entry.detail["note"] == "after the class migration"
    assert enrolled(h) == {"reembolso0@example.com"}  # a report changes nothing
    assert count(h, Event, Event.type == RECONCILE_EVENT) == 0

    page = signed_in.get(f"/ui/reconcile/{run_id}").text
    assert "Discord roles not compared: DISCORD_ENABLED is off" in page
    assert "ManyChat tags not compared: MANYCHAT_ENABLED is off" in page
    assert "classes compared with the engine&#39;s own table, not the course platform&#39;s list" in page
    assert "nova@example.com" in page and "reembolso0@example.com" in page and CLASS in page
    curso = re.search(r'<th scope="row">curso</th>(.*?)</tr>', page, flags=re.DOTALL).group(1)
    assert re.findall(r'<td class="num">(\d+)</td>', curso) == ["1", "1", "0", "0"]
    listing = signed_in.get("/ui/reconcile").text
    assert f'href="/ui/reconcile/{run_id}"' in listing and "reported" in listing


def test_a_report_without_the_csrf_token_is_refused(h, signed_in):
    assert signed_in.post("/ui/reconcile/report", data={"note": "x"}).status_code == 403
    assert count(h, ReconcileRun) == 0


def test_a_report_while_another_run_holds_the_lock_says_so(h, signed_in):
    token = csrf_of(signed_in.get("/ui/reconcile").text)
    with exclusive(h.runtime):
        busy = signed_in.post("/ui/reconcile/report", data={"csrf_token": token})
    assert busy.status_code == 409 and "Another reconcile is running" in busy.text
    assert count(h, ReconcileRun) == 0
    assert report(signed_in) == 1  # once the other run is over


def test_over_the_guard_the_confirmation_names_each_revocation_and_needs_the_checkbox(h, signed_in):
    student(h, "nova@example.com", "active", enrolled=False, granted=False)
    emails = refunded(h, GUARD + 1)
    run_id = report(signed_in)

    confirmation = signed_in.get(f"/ui/reconcile/{run_id}/apply")
    assert confirmation.status_code == 200
    text = confirmation.text
    assert "more than the blast-radius guard allows (2)" in text
    assert all(email in text for email in emails) and 'name="confirm"' in text and "required" in text

    refused = signed_in.post(
        f"/ui/reconcile/{run_id}/apply", data={"csrf_token": csrf_of(text), "note": "without reading"}
    )
    assert refused.status_code == 400 and "tick the box" in refused.text
    assert count(h, ReconcileRun) == 1 and count(h, Event, Event.type == RECONCILE_EVENT) == 0
    assert count(h, History, History.kind == "reconcile_applied") == 0

    applied = signed_in.post(
        f"/ui/reconcile/{run_id}/apply",
        data={"csrf_token": csrf_of(text), "confirm": "1", "note": "refunds of the old class"},
        follow_redirects=False,
    )
    assert applied.status_code == 303
    new_run = int(applied.headers["location"].rsplit("/", 1)[1])
    with h.runtime.sessions() as session:
        run = session.get(ReconcileRun, new_run)
        assert (run.trigger, run.mode, run.status) == ("page", "all", "applied")
        entry = session.scalar(select(History).where(History.kind == "reconcile_applied"))
    assert entry.actor == "admin:ana" and entry.detail["note"] == "refunds of the old class"
    assert entry.detail["confirm"] is True and entry.detail["reviewed_run_id"] == run_id
    assert (entry.detail["grants"], entry.detail["revokes"], entry.detail["held"]) == (1, GUARD + 1, False)

    assert len(h.queued) == GUARD + 2  # one RECONCILE event per student, for the worker
    h.run_queue()
    assert enrolled(h) == {"nova@example.com"}
    with h.runtime.sessions() as session:
        steps = session.scalars(select(Event.status).where(Event.type == RECONCILE_EVENT).order_by(Event.id)).all()
    assert steps == ["processed"] * (GUARD + 2)
    page = signed_in.get(f"/ui/reconcile/{new_run}").text
    assert "Queued 1 grants and 3 revocations as 4 RECONCILE events" in page


def test_a_confirmation_covers_only_the_revocations_it_named(h, signed_in):
    refunded(h, GUARD + 1)
    run_id = report(signed_in)
    token = csrf_of(signed_in.get(f"/ui/reconcile/{run_id}/apply").text)
    refunded(h, 1, first=GUARD + 1)  # one more since the report: not read by the operator

    applied = signed_in.post(
        f"/ui/reconcile/{run_id}/apply", data={"csrf_token": token, "confirm": "1"}, follow_redirects=False
    )
    new_run = int(applied.headers["location"].rsplit("/", 1)[1])
    with h.runtime.sessions() as session:
        assert session.get(ReconcileRun, new_run).status == "held"
        assert session.scalar(select(Alert.kind).order_by(Alert.id.desc()).limit(1)) == "reconcile.guard"
    assert h.queued == [] and len(enrolled(h)) == GUARD + 2  # nothing applied
    held = signed_in.get(f"/ui/reconcile/{new_run}").text
    assert "Held by the blast-radius guard" in held and "reembolso3@example.com" in held


def test_grants_only_applies_the_missing_grants_and_leaves_the_revocations(h, signed_in):
    student(h, "nova@example.com", "active", enrolled=False, granted=False)
    refunded(h, GUARD + 1)
    run_id = report(signed_in)
    confirmation = signed_in.get(f"/ui/reconcile/{run_id}/apply?grants_only=1").text
    assert 'name="confirm"' not in confirmation and "revoke nothing" in confirmation
    applied = signed_in.post(
        f"/ui/reconcile/{run_id}/apply",
        data={"csrf_token": csrf_of(confirmation), "grants_only": "1"},
        follow_redirects=False,
    )
    assert applied.status_code == 303
    h.run_queue()
    assert enrolled(h) == {"nova@example.com", *(f"reembolso{n}@example.com" for n in range(GUARD + 1))}
    with h.runtime.sessions() as session:
        assert session.scalar(select(ReconcileRun.mode).order_by(ReconcileRun.id.desc()).limit(1)) == "grants"


def test_within_the_guard_no_checkbox_is_asked(h, signed_in):
    refunded(h, GUARD)
    run_id = report(signed_in)
    confirmation = signed_in.get(f"/ui/reconcile/{run_id}/apply").text
    assert 'name="confirm"' not in confirmation and "reembolso1@example.com" in confirmation
    applied = signed_in.post(
        f"/ui/reconcile/{run_id}/apply", data={"csrf_token": csrf_of(confirmation)}, follow_redirects=False
    )
    assert applied.status_code == 303
    h.run_queue()
    assert enrolled(h) == set()


def test_applying_without_the_csrf_token_is_refused(h, signed_in):
    refunded(h, 1)
    run_id = report(signed_in)
    assert signed_in.post(f"/ui/reconcile/{run_id}/apply", data={"confirm": "1"}).status_code == 403
    assert count(h, ReconcileRun) == 1 and h.queued == []


def test_nothing_to_apply_offers_no_form(h, signed_in):
    run_id = report(signed_in)
    page = signed_in.get(f"/ui/reconcile/{run_id}").text
    assert "No difference" in page and f"/ui/reconcile/{run_id}/apply" not in page
    confirmation = signed_in.get(f"/ui/reconcile/{run_id}/apply").text
    assert "Nothing to apply." in confirmation and 'action="/ui/reconcile/' not in confirmation


def test_runs_are_paged_newest_first(h, signed_in):
    for _ in range(21):
        report(signed_in)
    first = signed_in.get("/ui/reconcile").text
    assert first.index('href="/ui/reconcile/21"') < first.index('href="/ui/reconcile/20"')
    assert 'href="/ui/reconcile/1"' not in first and "1–20 of 21" in first
    assert 'href="/ui/reconcile/1"' in signed_in.get("/ui/reconcile?offset=20").text


def test_an_unknown_run_is_a_404_page(signed_in):
    assert signed_in.get("/ui/reconcile/7").status_code == 404
    assert signed_in.get("/ui/reconcile/7/apply").status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/ui/reconcile?offset=-5",
        "/ui/reconcile?offset=99999999999999999999",
        "/ui/reconcile/0",
        "/ui/reconcile/nine",
        "/ui/reconcile/1/apply?grants_only=perhaps",
        "/ui/reconcile/9007199254740993/apply",
    ],
)
def test_hostile_parameters_answer_the_422_page(signed_in, path):
    assert signed_in.get(path).status_code == 422
