"""`engine reconcile` end to end: stories 33, 34 and 35 of shared/SCENARIOS.md, and the pieces
around them (ManyChat tags, classes, revocations, the intent switch, the stored runs).

The world of ``tests/e2e/scenario_fixtures.py``: the fake Discord and ManyChat servers in
threads, the REAL connectors talking HTTP to them (List Guild Members, getInfo, role and tag
writes), the pipeline on the real PostgreSQL. Applied diffs run as RECONCILE events through
the same queue and steps as any event.
"""

from __future__ import annotations

import shutil
from contextlib import ExitStack
from pathlib import Path

import pytest
from sqlalchemy import select

from engine.db.models import ActionRun, Alert, Event, Grant, Membership, ReconcileRun, Student
from engine.pipeline.classes import enroll_student
from engine.pipeline.replay import preview, replay
from engine.reconcile import RECONCILE_EVENT, compute, run_reconcile, scheduled_run
from engine.rules import load_rules
from tests.conftest import RULES
from tests.e2e.scenario_fixtures import (
    ANA_DISCORD,
    ANA_EMAIL,
    COMMUNITY_ROLE,
    COURSE_ROLE,
    VIP_ROLE,
    World,
    hotmart,
    open_world,
)

ALUMNI_ROLE = "1180000000000000077"
TYPO_ROLE = "1180000000000000099"


@pytest.fixture
def make_world(make_harness):
    with ExitStack() as stack:
        yield lambda **options: stack.enter_context(open_world(make_harness, **options))


def onboard(w: World) -> None:
    """Ana buys the course and links Discord: active, R_course, aluno-curso, curso-2026."""
    w.deliver(hotmart("purchase_approved", new_id=False))
    assert w.register(w.code()).outcome == "linked"
    assert w.states() == {"curso": "active"}
    assert w.roles() == {COURSE_ROLE}


def changed_rules(tmp_path: Path, product: str, old: str, new: str):
    rules_dir = tmp_path / "rules"
    shutil.copytree(RULES, rules_dir)
    path = rules_dir / "products" / f"{product}.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    return load_rules(rules_dir)


def seed_students(w: World, count: int, product: str, role: str, *, first_user: int = 300000000000000000) -> list:
    """``count`` linked students active in ``product`` whose ledger and guild hold ``role`` (and its
    classes); no ManyChat contact."""
    users = []
    with w.runtime.sessions.begin() as session:
        for i in range(count):
            user = str(first_user + i)
            student = Student(email=f"aluno{i}@example.com", discord_id=user)
            session.add(student)
            session.flush()
            membership = Membership(student_id=student.id, product_key=product, state="active")
            session.add(membership)
            session.flush()
            session.add(Grant(student_id=student.id, membership_id=membership.id, kind="discord_role", resource=role))
            for key in w.rules.products[product].classes:
                enroll_student(session, student.id, key)
                session.add(Grant(student_id=student.id, membership_id=membership.id, kind="class", resource=key))
            w.discord.add_member(user, [role])
            users.append(user)
    return users


def reconcile_events(w: World) -> list[Event]:
    return w.events(RECONCILE_EVENT)


# -- story 33 -----------------------------------------------------------------------------------


def test_story_33_a_role_removed_by_hand(make_world):
    """A moderator removes R_course from Ana (active). The nightly reconcile reports it and, with
    grants applied automatically, gives it back once. R_vip, given by hand and in no ledger, is
    never touched."""
    w = make_world(reconcile_apply="grants")
    onboard(w)
    w.discord.add_role(VIP_ROLE, "VIP", position=1)
    w.discord.set_member_roles(ANA_DISCORD, [VIP_ROLE])  # R_course removed, R_vip given by hand

    run_id = scheduled_run(w.runtime)
    assert run_id is not None
    queued = reconcile_events(w)
    assert len(queued) == 1 and queued[0].status == "processing"  # planned, waiting for the worker
    w.h.run_queue()
    assert w.roles() == {COURSE_ROLE, VIP_ROLE}

    [event] = reconcile_events(w)
    assert event.status == "processed" and event.email == ANA_EMAIL
    [step] = w.steps(event.id)
    assert (step.action, step.params, step.status) == ("add_role", {"role_ids": [COURSE_ROLE]}, "done")
    puts = [(m, p) for m, p in w.role_requests() if p.endswith(COURSE_ROLE)]
    assert puts[-1][0] == "PUT"
    assert all(VIP_ROLE not in path for _, path in w.role_requests())  # never even asked

    response = w.admin("GET", "/admin/reconcile/runs")
    assert response.status_code == 200
    [stored] = response.json()["items"]
    assert stored["id"] == run_id and stored["trigger"] == "schedule" and stored["mode"] == "grants"
    assert stored["status"] == "applied"
    assert stored["counts"] == {"curso": {"missing": 1, "extra": 0, "not_in_server": 0, "subscribers_not_found": 0}}
    assert stored["diff"]["missing"] == [
        {
            "student_id": event.student_id,
            "email": ANA_EMAIL,
            "membership_id": w.membership("curso").id,
            "product": "curso",
            "kind": "discord_role",
            "resource": COURSE_ROLE,
        }
    ]
    assert stored["applied"]["grants"] == 1 and stored["applied"]["events"] == [event.id]

    # The next night: nothing to give back, nothing queued ("once").
    w.clock.advance(days=1)
    scheduled_run(w.runtime)
    w.h.run_queue()
    assert len(reconcile_events(w)) == 1
    assert w.roles() == {COURSE_ROLE, VIP_ROLE}
    runs = w.admin("GET", "/admin/reconcile/runs").json()
    assert runs["total"] == 2 and runs["items"][0]["status"] == "reported" and runs["items"][0]["counts"] == {}
    assert w.alerts() == []  # everything it found, it fixed: nothing to tell


def test_report_only_by_default_changes_nothing(make_world):
    w = make_world()  # RECONCILE_APPLY unset: report only
    onboard(w)
    w.discord.set_member_roles(ANA_DISCORD, [])
    scheduled_run(w.runtime)
    assert reconcile_events(w) == [] and w.roles() == set()
    with w.runtime.sessions() as session:
        run = session.scalars(select(ReconcileRun)).one()
    assert (run.mode, run.status, run.counts["curso"]["missing"]) == ("report", "reported", 1)
    [alert] = w.alerts()  # the admins hear of it without polling
    assert alert.kind == "reconcile.drift"
    assert alert.message.startswith(
        f"Reconcile run {run.id} found access that differs from the rules and left it as is (RECONCILE_APPLY=none): "
        f"curso: 1 missing (e.g. {ANA_EMAIL}: role {COURSE_ROLE} (curso))."
    )
    assert any(message.startswith(f"⚠️ Reconcile run {run.id} found") for message in w.channel())


def test_a_tag_and_a_class_removed_by_hand_come_back(make_world):
    w = make_world()
    onboard(w)
    w.subscriber().tags.discard("aluno-curso")
    with w.runtime.sessions.begin() as session:  # someone deleted the enrollment
        from engine.db.models import ClassEnrollment

        session.query(ClassEnrollment).delete()
    report = compute(w.runtime)
    assert report.checked == ["discord_role", "manychat_tag", "class"]
    assert {(c.kind, c.resource) for c in report.diff.grants} == {
        ("manychat_tag", "aluno-curso"),
        ("class", "curso-2026"),
    }
    run_reconcile(w.runtime, mode="all")
    w.h.run_queue()
    assert w.subscriber().tags == {"aluno-curso"} and w.classes() == {"curso-2026"}
    assert compute(w.runtime).diff.empty


def test_extra_access_the_engine_granted_is_revoked_and_nothing_else(make_world):
    """A membership the rules say holds nothing (its refund was lost): the engine takes back
    what its ledger says it granted, and only that."""
    w = make_world()
    onboard(w)
    w.discord.add_role(VIP_ROLE, "VIP", position=1)
    w.discord.set_member_roles(ANA_DISCORD, [COURSE_ROLE, VIP_ROLE])
    with w.runtime.sessions.begin() as session:
        session.scalars(select(Membership)).one().state = "refunded"
    report = compute(w.runtime)
    assert {(c.kind, c.resource) for c in report.diff.revokes} == {
        ("discord_role", COURSE_ROLE),
        ("manychat_tag", "aluno-curso"),
        ("class", "curso-2026"),
    }
    assert report.diff.grants == []
    _, _, applied = run_reconcile(w.runtime, mode="all")
    assert not applied.held and applied.revokes == 3
    w.h.run_queue()
    assert w.roles() == {VIP_ROLE}
    assert w.subscriber().tags == set() and w.classes() == set() and w.grants() == set()


def test_grants_only_leaves_revocations(make_world):
    w = make_world()
    onboard(w)
    with w.runtime.sessions.begin() as session:
        session.scalars(select(Membership)).one().state = "refunded"
    _, report, applied = run_reconcile(w.runtime, mode="grants")
    assert len(report.diff.revokes) == 3
    assert applied is not None and applied.revokes == 0 and applied.events == []
    w.h.run_queue()
    assert w.roles() == {COURSE_ROLE}


# -- story 34 -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_story_34_a_mass_revoke_is_held(make_world, tmp_path):
    """A bad rules change would make 300 students lose R_community: reconcile stops at the
    guard, alerts, and applies nothing until an admin confirms."""
    w = make_world()
    users = seed_students(w, 300, "comunidade", COMMUNITY_ROLE)
    w.discord.add_role(TYPO_ROLE, "Typo", position=1)
    bad = changed_rules(tmp_path, "comunidade", f'"{COMMUNITY_ROLE}"', f'"{TYPO_ROLE}"')

    run_id, report, applied = run_reconcile(w.runtime, mode="all", rules=bad)
    assert len(report.diff.revokes) == 300 and len(report.diff.grants) == 300
    assert applied.held and applied.limit == 15  # 5 % of 300 is more than 10
    assert reconcile_events(w) == []  # nothing applied, not even the grants
    assert all(w.roles(user) == {COMMUNITY_ROLE} for user in users)
    [alert] = w.alerts()
    assert alert.kind == "reconcile.guard" and "300 revocation(s)" in alert.message
    assert "aluno0@example.com: role 1180000000000000002 (comunidade)" in alert.message
    assert any("blast-radius guard" in message for message in w.channel())  # the admins' channel
    with w.runtime.sessions() as session:
        run = session.get(ReconcileRun, run_id)
        assert run.status == "held" and run.applied["held"] is True
        assert run.counts["comunidade"]["extra"] == 300

    # A larger limit given on purpose, or --confirm, lets it through.
    _, _, confirmed = run_reconcile(w.runtime, mode="all", rules=bad, confirm=True)
    assert not confirmed.held and len(confirmed.events) == 300
    w.h.queued[:] = w.h.queued[:3]  # run three students' steps: the rest would take 12 s of Discord's budget
    w.h.run_queue()
    assert [w.roles(user) for user in users[:3]] == [{TYPO_ROLE}] * 3
    assert w.roles(users[3]) == {COMMUNITY_ROLE}


def test_the_guard_counts_only_revocations_and_takes_an_explicit_limit(make_world, tmp_path):
    w = make_world()
    seed_students(w, 12, "comunidade", COMMUNITY_ROLE)
    w.discord.add_role(TYPO_ROLE, "Typo", position=1)
    bad = changed_rules(tmp_path, "comunidade", f'"{COMMUNITY_ROLE}"', f'"{TYPO_ROLE}"')
    _, _, held = run_reconcile(w.runtime, mode="all", rules=bad)
    assert held.held and held.limit == 10  # 5 % of 12 is less than 10
    _, _, passed = run_reconcile(w.runtime, mode="all", rules=bad, max_revokes=12)
    assert not passed.held and len(passed.events) == 12


# -- story 35 -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_story_35_after_a_rules_change_reconcile_grants_the_new_role_paced(make_world, tmp_path):
    """Adding R_alumni to product C's access: after the merge, reconcile grants it to every
    student who holds C, paced under Discord's limits (here 10 requests per 1 s window)."""
    w = make_world(route_limit=10, route_window=1.0)
    users = seed_students(w, 25, "curso", COURSE_ROLE)
    w.discord.add_role(ALUMNI_ROLE, "Alumni", position=1)
    merged = changed_rules(tmp_path, "curso", f'["{COURSE_ROLE}"]', f'["{COURSE_ROLE}", "{ALUMNI_ROLE}"]')

    before = compute(w.runtime, merged)
    assert {(c.kind, c.resource) for c in before.diff.grants} == {("discord_role", ALUMNI_ROLE)}
    assert len(before.diff.grants) == 25 and before.diff.revokes == []

    _, _, applied = run_reconcile(w.runtime, mode="all", rules=merged)
    assert applied.grants == 25 and len(applied.events) == 25
    w.h.run_queue()
    assert all(w.roles(user) == {COURSE_ROLE, ALUMNI_ROLE} for user in users)
    assert w.discord.max_429_per_window() <= 1  # paced: at most the first 429 of a window
    with w.runtime.sessions() as session:
        steps = session.scalars(select(ActionRun).where(ActionRun.action == "add_role")).all()
        assert len(steps) == 25 and {s.status for s in steps} == {"done"}
        grants = session.scalars(select(Grant.resource).where(Grant.resource == ALUMNI_ROLE)).all()
        assert len(grants) == 25  # the ledger knows the engine granted it
    assert compute(w.runtime, merged).diff.empty


# -- what cannot be compared --------------------------------------------------------------------


def test_members_not_in_the_server_and_contacts_not_found_are_reported(make_world):
    w = make_world()
    onboard(w)
    w.discord.remove_member(ANA_DISCORD)
    w.manychat.subscribers.clear()
    report = compute(w.runtime)
    assert [(f.email, f.product) for f in report.not_in_server] == [(ANA_EMAIL, "curso")]
    assert [(f.email, f.product) for f in report.subscribers_not_found] == [(ANA_EMAIL, "curso")]
    assert report.diff.grants == []  # nothing to grant to nobody
    counts = report.counts()["curso"]
    assert (counts["not_in_server"], counts["subscribers_not_found"]) == (1, 1)


def test_without_the_members_intent_roles_are_not_compared(make_world):
    w = make_world()
    onboard(w)
    w.discord.set_member_roles(ANA_DISCORD, [])
    w.discord.application_flags = 0  # the Server Members intent is off: List Guild Members is refused
    report = compute(w.runtime)
    assert "discord_role" not in report.checked
    assert any("Server Members Intent" in note for note in report.notes)
    assert report.diff.grants == [] and report.not_in_server == []


def test_a_member_list_longer_than_a_page_is_read_page_by_page(make_world):
    w = make_world()
    onboard(w)
    for i in range(1500):
        w.discord.add_member(str(200000000000000000 + i))
    w.discord.set_member_roles(ANA_DISCORD, [])
    report = compute(w.runtime)
    assert [c.resource for c in report.diff.grants] == [COURSE_ROLE]
    pages = [r["path"] for r in w.discord.requests if r["path"].endswith("/members")]
    assert len(pages) == 2  # 1,501 members: a full page of 1,000, then 501


def test_a_run_already_in_progress_blocks_a_second(make_world):
    from engine.reconcile import Busy
    from engine.reconcile.runs import exclusive

    w = make_world()
    with exclusive(w.runtime), pytest.raises(Busy):
        run_reconcile(w.runtime)
    with w.runtime.sessions() as session:
        assert session.scalars(select(Alert)).all() == []


def test_a_reconcile_step_is_retried_and_alerted_like_any_step(make_world):
    w = make_world()
    onboard(w)
    w.discord.set_member_roles(ANA_DISCORD, [])
    w.discord.queue_failure(503, times=2, path_contains=f"/roles/{COURSE_ROLE}", method="PUT")
    run_reconcile(w.runtime, mode="grants")
    w.h.run_queue()
    [event] = reconcile_events(w)
    assert event.enqueued_at == event.received_at  # queued when the run applied it
    [step] = w.steps(event.id)
    assert (event.status, step.status, step.error) == ("retrying", "retrying", "discord.unavailable")
    w.drain_retries()
    [step] = w.steps(event.id)
    assert (w.event(event.id).status, step.status, step.attempts) == ("failed", "failed", 2)
    [alert] = w.alerts()
    assert alert.kind == "discord.unavailable" and alert.event_id == event.id
    assert f"Step add_role for {ANA_EMAIL} (event {event.id}, RECONCILE) failed" in alert.message
    assert w.roles() == set()
    # Not a replay: the rules never decided these steps (the admin's retry below resumes them).
    [previewed] = preview(w.runtime, [event.id])
    assert previewed.after == "failed" and "a reconcile run's steps" in previewed.reason and previewed.refused
    [refused] = replay(w.runtime, [event.id], actor="cli")
    assert (refused.before, refused.after, refused.refused) == ("failed", "failed", True)
    assert refused.reason.startswith(f"event {event.id} is a reconcile run's steps, not a rules decision")
    assert w.event(event.id).status == "failed" and w.roles() == set()
    response = w.admin("POST", f"/admin/events/{event.id}/retry")  # the admin's retry, as for any event
    assert response.status_code == 202, response.text
    w.h.run_queue()
    assert w.roles() == {COURSE_ROLE}
