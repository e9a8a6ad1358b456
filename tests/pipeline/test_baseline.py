"""Where a membership's replay starts: the rules' initial state, or its import's snapshot."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta

import pytest

from engine.db.models import Membership, Student
from engine.pipeline.baseline import Baseline, baseline, snapshot
from engine.pipeline.history import record_history
from engine.rules import check_rules
from tests.conftest import RULES

pytestmark = pytest.mark.integration

AT = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
ROLE, NEW_ROLE = "1180000000000000002", "1180000000000000009"  # the community's role, and another


@pytest.fixture
def h(make_harness):
    return make_harness()


def _membership(session, email: str, discord_id: str | None = None) -> Membership:
    student = Student(email=email, discord_id=discord_id)
    session.add(student)
    session.flush()
    membership = Membership(student_id=student.id, product_key="comunidade", state="active")
    session.add(membership)
    session.flush()
    return membership


def _history(session, membership: Membership, kind: str, detail: dict, at: datetime = AT) -> None:
    record_history(
        session, kind=kind, at=at, student_id=membership.student_id, membership_id=membership.id, detail=detail
    )
    session.flush()


def _start(h, session, membership: Membership | None, rules=None) -> Baseline:
    rules = rules or h.runtime.rules.rules
    return baseline(session, rules, rules.products["comunidade"], membership)


def test_a_membership_nobody_imported_starts_from_the_rules_initial_state(h):
    with h.runtime.sessions() as session:
        assert _start(h, session, None) == Baseline("new")
        membership = _membership(session, "nobody-imported@example.com")
        _history(session, membership, "replay", {"state": "active"})
        assert _start(h, session, membership) == Baseline("new")
        session.rollback()


def test_an_imported_membership_starts_from_its_snapshot(h):
    with h.runtime.sessions() as session:
        membership = _membership(session, "snapshot@example.com")
        grants = {"discord_role": {ROLE}, "manychat_tag": {"assinante", "ex-assinante"}}
        timers = {"ACCESS_ENDS": "2026-03-10T00:00:00+00:00"}
        detail = {"state": "cancelled", "adopt_access": True, "linked": True, **snapshot(grants, timers)}
        _history(session, membership, "imported", detail)
        start = _start(h, session, membership)
        session.rollback()
    assert start == Baseline(
        "cancelled",
        AT,
        {"discord_role": frozenset({ROLE}), "manychat_tag": frozenset({"assinante", "ex-assinante"})},
        timers,
    )
    assert start.covers(AT - timedelta(seconds=1)) and not start.covers(AT)


def test_what_an_import_adopted_is_read_under_the_current_rules(h, tmp_path):
    """The community's role replaced since the import: the snapshot holds the new one (the state
    must hold it), not the old one (no state may hold it any more)."""
    rules_dir = tmp_path / "rules"
    shutil.copytree(RULES, rules_dir)
    product = rules_dir / "products" / "comunidade.yaml"
    product.write_text(product.read_text().replace(ROLE, NEW_ROLE))
    changed, problems = check_rules(rules_dir)
    assert problems == []
    with h.runtime.sessions() as session:
        membership = _membership(session, "replaced@example.com")
        grants = {"discord_role": {ROLE}, "manychat_tag": {"assinante"}}
        detail = {"state": "active", "adopt_access": True, "linked": True, **snapshot(grants, {})}
        _history(session, membership, "imported", detail)
        start = _start(h, session, membership, changed)
        session.rollback()
    assert start.grants == {"discord_role": frozenset({NEW_ROLE}), "manychat_tag": frozenset({"assinante"})}


def test_an_import_that_adopted_nothing_starts_with_nothing_granted(h):
    with h.runtime.sessions() as session:
        membership = _membership(session, "own-roles@example.com")
        detail = {"state": "active", "adopt_access": False, "linked": True, **snapshot({}, {})}
        _history(session, membership, "imported", detail)
        start = _start(h, session, membership)
        session.rollback()
    assert (start.state, start.grants) == ("active", {})


def test_a_snapshot_follows_the_renames_of_its_state_since(h):
    with h.runtime.sessions() as session:
        membership = _membership(session, "renamed@example.com")
        _history(session, membership, "state_renamed", {"from": "waiting", "to": "older"})  # before: not hers
        _history(session, membership, "imported", {"state": "waiting", **snapshot({}, {})})
        _history(session, membership, "state_renamed", {"from": "waiting", "to": "pending_onboarding"})
        _history(session, membership, "state_renamed", {"from": "other", "to": "active"})
        start = _start(h, session, membership)
        session.rollback()
    assert start.state == "pending_onboarding"


def test_a_snapshot_in_a_state_the_rules_no_longer_have_starts_from_the_beginning(h):
    with h.runtime.sessions() as session:
        membership = _membership(session, "lost-state@example.com")
        _history(session, membership, "imported", {"state": "vip", **snapshot({}, {})})
        start = _start(h, session, membership)
        session.rollback()
    assert start == Baseline("new")


def test_an_import_recorded_before_snapshots_assumes_what_an_adopting_import_granted(h):
    """Rows written before the snapshot was: the product's resources the state may hold, and
    whether linked from the student as they are."""
    with h.runtime.sessions() as session:
        adopted = _membership(session, "adopted@example.com", discord_id="80351110224678000")
        not_adopted = _membership(session, "own@example.com")
        _history(session, adopted, "imported", {"state": "active", "adopt_access": True})
        _history(session, not_adopted, "imported", {"state": "active", "adopt_access": False})
        starts = _start(h, session, adopted), _start(h, session, not_adopted)
        session.rollback()
    assert starts[0].grants == {"discord_role": frozenset({ROLE}), "manychat_tag": frozenset({"assinante"})}
    assert starts[1].grants == {} and starts[1].timers == {}
