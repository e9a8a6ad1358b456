"""The students read model: which states count as "stuck" comes from the rules, not from a state name."""

from __future__ import annotations

import shutil
from pathlib import Path

from sqlalchemy import select

from engine.db.models import Membership
from engine.rules import check_rules
from engine.service.students import states_waiting_for_link, student_page
from tests.conftest import RULES, load_payload, shipped_rules

ANA = "ana.exemplo@example.com"


def renamed_rules(tmp_path: Path, old: str, new: str) -> Path:
    """A copy of the shipped rules with the state ``old`` called ``new`` everywhere."""
    target = tmp_path / "rules"
    shutil.copytree(RULES, target)
    for path in target.rglob("*.yaml"):
        path.write_text(path.read_text().replace(old, new))
    return target


def test_the_shipped_rules_wait_for_the_link_in_pending_onboarding():
    assert states_waiting_for_link(shipped_rules()) == {"pending_onboarding"}


def test_a_renamed_waiting_state_is_the_one_that_waits(tmp_path):
    rules, problems = check_rules(renamed_rules(tmp_path, "pending_onboarding", "awaiting_discord"))
    assert problems == []
    assert states_waiting_for_link(rules) == {"awaiting_discord"}


def test_stuck_students_are_found_in_the_renamed_state(make_harness, tmp_path):
    h = make_harness(rules_dir=renamed_rules(tmp_path, "pending_onboarding", "awaiting_discord"))
    h.deliver(load_payload("purchase_approved.json"))
    rules = h.runtime.rules.rules

    def stuck(days: int) -> list[str]:
        with h.runtime.sessions() as session:
            page = student_page(session, rules, stuck_days=days, now=h.clock())
        return [student.email for student in page.items]

    with h.runtime.sessions() as session:
        assert session.scalars(select(Membership.state)).all() == ["awaiting_discord"]
    assert stuck(1) == []  # just bought
    h.clock.advance(days=2)
    assert stuck(1) == [ANA]
    assert stuck(3) == []
