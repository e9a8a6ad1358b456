"""Reconcile against the course platform (issue 25, part 3): with COURSE_ENROLLMENTS_URL, `engine
reconcile` compares the rules with the platform's own list of each class, not the engine's table.

The world of tests/e2e/scenario_fixtures.py with the fake course platform (``course_reads``): the
real classes connector reads ``GET /enrollments?class=&cursor=`` signed with the webhook secret (the
fake verifies every read with the ``standardwebhooks`` library) and tells the platform through the
ordinary enroll / unenroll steps, as any event's.
"""

from __future__ import annotations

from contextlib import ExitStack

import pytest

from engine.reconcile import compute, run_reconcile
from tests.e2e.scenario_fixtures import ANA_EMAIL, World, hotmart, open_world

APPROVED, REFUNDED = "purchase_approved", "purchase_refunded"
CLASS = "curso-2026"


@pytest.fixture
def make_world(make_harness):
    with ExitStack() as stack:
        yield lambda **options: stack.enter_context(open_world(make_harness, **options))


def onboarded(w: World) -> None:
    """Ana buys the course and links Discord: the platform receives her enrollment in curso-2026."""
    w.deliver(hotmart(APPROVED, new_id=False))
    assert w.register(w.code()).outcome == "linked"
    assert w.course.members(CLASS) == {ANA_EMAIL}


def class_changes(changes) -> list[tuple[str, str]]:
    return [(change.email, change.resource) for change in changes if change.kind == "class"]


def test_the_platform_lost_an_enrollment_and_reconcile_gives_it_back(make_world):
    """The platform loses Ana's enrollment while the engine's table still has it: reconcile reads the
    platform's list, reports her class missing, and --apply sends one created message; the platform
    holds her again and the next comparison finds nothing."""
    w = make_world(course_platform=True, course_reads=True)
    platform = w.course
    onboarded(w)
    platform.lose(CLASS, ANA_EMAIL)

    report = compute(w.runtime)
    assert "class" in report.checked and report.notes == []
    assert class_changes(report.diff.grants) == [(ANA_EMAIL, CLASS)] and report.diff.revokes == []
    assert w.classes() == {CLASS}  # the engine's table never noticed: the platform's list is what counts
    assert platform.reads and all(read.verified for read in platform.reads)
    assert {read.params["class"] for read in platform.reads} == {CLASS}

    told = len(platform.accepted())
    run_reconcile(w.runtime, mode="all")
    w.h.run_queue()

    [created] = platform.accepted()[told:]
    assert created.verified and created.message["type"] == "class.enrollment.created"
    assert (created.message["data"]["class_key"], created.message["data"]["email"]) == (CLASS, ANA_EMAIL)
    assert platform.members(CLASS) == {ANA_EMAIL} and w.classes() == {CLASS}
    assert compute(w.runtime).diff.empty
    assert w.alerts() == []


def test_an_enrollment_the_engine_never_gave_is_reported_and_left(make_world):
    """After her refund someone enrolls Ana again on the platform by hand, and a teacher the engine
    never heard of: both are reported, neither is removed, not even by --apply."""
    w = make_world(course_platform=True, course_reads=True)
    platform = w.course
    onboarded(w)
    w.deliver(hotmart(REFUNDED, new_id=False))
    assert platform.members(CLASS) == set()
    platform.enroll_by_hand(CLASS, ANA_EMAIL)
    platform.enroll_by_hand(CLASS, "teacher@example.com")

    report = compute(w.runtime)
    assert "class" in report.checked and report.diff.empty
    assert report.notes == [
        f"class {CLASS}: 2 enrollment(s) on the course platform that the engine did not give and the rules do "
        f"not allow, left as they are: {ANA_EMAIL}, teacher@example.com"
    ]
    told = len(platform.deliveries)

    run_id, _, applied = run_reconcile(w.runtime, mode="all")
    w.h.run_queue()

    assert applied is None  # nothing to apply
    assert len(platform.deliveries) == told
    assert platform.members(CLASS) == {ANA_EMAIL, "teacher@example.com"}


def test_an_enrollment_the_engine_gave_for_a_refunded_membership_is_removed(make_world):
    """The platform was down through Ana's refund (the unenroll step failed after its retry, an admin
    was alerted): the engine's ledger still says it gave curso-2026, the platform still has her.
    Reconcile finds it extra and --apply sends the deletion; the platform lets her go."""
    w = make_world(course_platform=True, course_reads=True)
    platform = w.course
    onboarded(w)
    platform.fail(503, times=0)
    refund_id = w.deliver(hotmart(REFUNDED, new_id=False))
    w.drain_retries()
    assert w.step(refund_id, "unenroll").status == "failed"
    assert w.states() == {"curso": "refunded"} and platform.members(CLASS) == {ANA_EMAIL}
    platform.recover()

    report = compute(w.runtime)
    assert class_changes(report.diff.revokes) == [(ANA_EMAIL, CLASS)]
    assert class_changes(report.diff.grants) == []

    told = len(platform.accepted())
    run_reconcile(w.runtime, mode="all")
    w.h.run_queue()

    deleted = [d for d in platform.accepted()[told:] if d.message["type"] == "class.enrollment.deleted"]
    assert [(d.message["data"]["class_key"], d.message["data"]["email"]) for d in deleted] == [(CLASS, ANA_EMAIL)]
    assert platform.members(CLASS) == set() and w.classes() == set()
    assert ("curso", "class", CLASS) not in w.grants()
    assert class_changes(compute(w.runtime).diff.revokes) == []


def test_the_platform_down_leaves_classes_not_compared(make_world):
    """The platform answers 503 to every read (tried again, then given up): classes are "not
    compared" with the reason, the rest of the report stands, and --apply sends the platform nothing
    even though it lost Ana's enrollment."""
    w = make_world(course_platform=True, course_reads=True)
    platform = w.course
    onboarded(w)
    platform.lose(CLASS, ANA_EMAIL)
    platform.fail(503, times=0)

    report = compute(w.runtime)
    assert report.checked == ["discord_role", "manychat_tag"]
    [note] = report.notes
    said = f"enrollments of {CLASS}, page 1: the course platform answered HTTP 503"
    assert note.startswith(f"classes not compared: classes.unavailable: {said}")
    assert class_changes(report.diff.grants) == [] and report.diff.empty
    assert [read.status for read in platform.reads] == [503] * 4  # the first try and three more
    told = len(platform.deliveries)

    run_reconcile(w.runtime, mode="all")
    w.h.run_queue()

    assert len(platform.deliveries) == told and platform.members(CLASS) == set()


def test_without_the_url_the_engines_table_is_compared_and_the_note_says_so(make_world):
    """COURSE_ENROLLMENTS_URL not set (the webhook on): the platform's list is never asked for; the
    engine's table is compared, as before, and the report names the setting."""
    w = make_world(course_platform=True)
    onboarded(w)
    w.course.lose(CLASS, ANA_EMAIL)

    report = compute(w.runtime)
    assert "class" in report.checked and report.diff.empty  # the table still has Ana
    assert report.notes == [
        "classes compared with the engine's own table, not the course platform's list: "
        "COURSE_ENROLLMENTS_URL is not set"
    ]
    assert w.course.reads == []
