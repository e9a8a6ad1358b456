"""The desired access derived from the rules' transitions (engine/lifecycle/access.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

from engine.lifecycle.access import derive, product_resources
from engine.rules import load_rules
from tests.conftest import RULES

COURSE_ROLE, COMMUNITY_ROLE = "1180000000000000001", "1180000000000000002"


def test_a_linked_active_course_student_holds_the_whole_product():
    curso = derive(load_rules(RULES))["curso"]
    active = curso.of("active", linked=True)
    assert active.must == {("discord_role", COURSE_ROLE), ("manychat_tag", "aluno-curso"), ("class", "curso-2026")}
    assert active.may == active.must


def test_onboarding_holds_the_tag_only_and_a_refund_nothing():
    curso = derive(load_rules(RULES))["curso"]
    assert curso.of("pending_onboarding", linked=False).must == {("manychat_tag", "aluno-curso")}
    assert curso.of("refunded", linked=True).must == frozenset()
    assert curso.of("refunded", linked=True).may == frozenset()


def test_churn_leaves_the_alumni_tag_which_may_stay_through_later_states():
    comunidade = derive(load_rules(RULES))["comunidade"]
    assert comunidade.of("churned", linked=True).must == {("manychat_tag", "ex-assinante")}
    # The engine never removes ex-assinante: a churned student who buys again may still carry it.
    active = comunidade.of("active", linked=True)
    assert active.must == {("discord_role", COMMUNITY_ROLE), ("manychat_tag", "assinante")}
    assert active.may - active.must == {("manychat_tag", "ex-assinante")}


def test_a_cancelled_student_holds_roles_only_once_linked():
    comunidade = derive(load_rules(RULES))["comunidade"]
    assert comunidade.of("cancelled", linked=False).must == {("manychat_tag", "assinante")}
    assert ("discord_role", COMMUNITY_ROLE) in comunidade.of("cancelled", linked=True).must


def test_a_state_no_history_reaches_is_unknown_not_empty():
    curso = derive(load_rules(RULES))["curso"]
    imported = curso.of("active", linked=False)  # only an import puts an unlinked student in active
    assert imported.reachable is False
    assert imported.must == frozenset()
    assert imported.may == product_resources(curso.product)


def test_a_role_added_to_a_product_is_wanted_wherever_the_product_grants_roles(tmp_path: Path):
    rules_dir = tmp_path / "rules"
    shutil.copytree(RULES, rules_dir)
    product = rules_dir / "products" / "curso.yaml"
    product.write_text(
        product.read_text().replace('["1180000000000000001"]', '["1180000000000000001", "1180000000000000077"]')
    )
    curso = derive(load_rules(rules_dir))["curso"]
    assert ("discord_role", "1180000000000000077") in curso.of("active", linked=True).must
    assert ("discord_role", "1180000000000000077") not in curso.of("pending_onboarding", linked=False).may
