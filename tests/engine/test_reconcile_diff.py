"""The per-student diff of engine reconcile, without I/O: desired from the rules, owned from the ledger."""

from __future__ import annotations

from engine.lifecycle.access import derive
from engine.reconcile.apply import revoke_limit
from engine.reconcile.diff import AccessDiff, MembershipView, Report, StudentView, diff_student
from engine.rules import load_rules
from tests.conftest import RULES

COURSE_ROLE, COMMUNITY_ROLE, VIP_ROLE = "1180000000000000001", "1180000000000000002", "1180000000000000003"
ALL = ["discord_role", "manychat_tag", "class"]
ACCESS = derive(load_rules(RULES))


def student(*memberships: tuple[int, str, str], owned=None, roles=(), tags=(), classes=(), linked=True) -> StudentView:
    view = StudentView(
        1,
        "ana@example.com",
        "80351110224678912" if linked else None,
        "900000001",
        [MembershipView(*m) for m in memberships],
        owned=dict(owned or {}),
    )
    view.actual = {"discord_role": set(roles), "manychat_tag": set(tags), "class": set(classes)}
    return view


def diff(view: StudentView) -> Report:
    report = Report(AccessDiff(students=1), checked=list(ALL))
    diff_student(view, ACCESS, report)
    return report


def test_access_is_a_union_across_memberships():
    """Refunded curso, active combo: combo still grants R_course, so nothing of curso's is extra."""
    view = student(
        (10, "curso", "refunded"),
        (11, "combo", "active"),
        owned={("discord_role", COURSE_ROLE): [10, 11], ("discord_role", COMMUNITY_ROLE): [11]},
        roles={COURSE_ROLE, COMMUNITY_ROLE},
        tags={"aluno-curso", "assinante"},
        classes={"curso-2026"},
    )
    report = diff(view)
    assert report.diff.revokes == []
    assert report.diff.grants == []


def test_only_what_the_engine_granted_is_extra_and_each_owner_gets_its_step():
    view = student(
        (10, "curso", "refunded"),
        (11, "combo", "refunded"),
        owned={("discord_role", COURSE_ROLE): [10, 11]},
        roles={COURSE_ROLE, COMMUNITY_ROLE, VIP_ROLE},  # R_community and R_vip: in no ledger
    )
    report = diff(view)
    assert [(c.membership_id, c.product, c.resource) for c in report.diff.revokes] == [
        (10, "curso", COURSE_ROLE),
        (11, "combo", COURSE_ROLE),
    ]
    assert report.counts()["curso"]["extra"] == 1 and report.counts()["combo"]["extra"] == 1


def test_missing_goes_to_the_first_membership_that_grants_it():
    view = student((10, "curso", "active"), (11, "combo", "active"))
    report = diff(view)
    course_role = [c for c in report.diff.grants if c.resource == COURSE_ROLE]
    assert [(c.membership_id, c.product) for c in course_role] == [(10, "curso")]
    community = [c for c in report.diff.grants if c.resource == COMMUNITY_ROLE]
    assert [(c.membership_id, c.product) for c in community] == [(11, "combo")]


def test_an_unlinked_student_in_onboarding_is_owed_the_tag_and_no_role():
    view = student((10, "curso", "pending_onboarding"), linked=False, tags={"aluno-curso"})
    view.actual["discord_role"] = set()
    report = diff(view)
    assert report.diff.grants == [] and report.diff.revokes == []


def test_a_state_the_rules_cannot_explain_and_a_dropped_product_keep_their_grants():
    view = student(
        (10, "curso", "active"),  # active but never linked: only an import puts a student there
        (11, "retired", "active"),  # a product the rules no longer have
        owned={("discord_role", COURSE_ROLE): [10], ("discord_role", "1180000000000000050"): [11]},
        roles={COURSE_ROLE, "1180000000000000050"},
        linked=False,
    )
    view.actual["discord_role"] = {COURSE_ROLE, "1180000000000000050"}
    report = diff(view)
    assert report.diff.revokes == []


def test_unknown_holdings_are_findings_not_changes():
    view = student((10, "curso", "active"))
    view.actual["discord_role"] = None  # linked, not in the server
    view.actual["manychat_tag"] = None  # no contact found
    report = diff(view)
    assert [f.product for f in report.not_in_server] == ["curso"]
    assert [f.product for f in report.subscribers_not_found] == ["curso"]
    assert {c.kind for c in report.diff.grants} == {"class"}


def test_the_guard_allows_ten_or_five_percent_whichever_is_larger():
    assert revoke_limit(0) == 10 and revoke_limit(200) == 10 and revoke_limit(201) == 11
    assert revoke_limit(6000) == 300
    assert revoke_limit(6000, max_revokes=0) == 0
