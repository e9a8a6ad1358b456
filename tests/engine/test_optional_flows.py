"""Products declare only what they use: `flows: {x: none}` and `trigger_flow: {flow: x, optional: true}`."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from engine.lifecycle.planner import Facts, Planner
from engine.rules import check_rules, load_rules
from tests.engine.test_rules_check import copy_rules, edit, resolve

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
BILLET = "    billet_reminder: content20261101000000_000005\n"


def _plan_billet(rules_dir: Path):
    rules = load_rules(rules_dir)
    product = rules.products["curso"]
    return Planner(rules).plan("PURCHASE_BILLET_PRINTED", {}, product, "new", Facts(now=NOW))


def curso_declines_billet_reminder(tmp_path: Path) -> Path:
    """A copy of the rules where curso lists `billet_reminder: none`."""
    rules_dir = copy_rules(tmp_path)
    edit(rules_dir, "products/curso.yaml", BILLET, "    billet_reminder: none   # no boleto reminder\n")
    return rules_dir


def test_a_product_declining_a_flow_with_none_passes_check_and_skips_the_step(tmp_path: Path) -> None:
    rules_dir = curso_declines_billet_reminder(tmp_path)
    assert check_rules(rules_dir)[1] == []
    plan = _plan_billet(rules_dir)
    assert plan.transition == "waiting_for_payment"
    [step] = plan.steps
    assert (step.action, step.params) == ("trigger_flow", {"flow": "billet_reminder"})
    assert step.skip_reason == "product curso sends no 'billet_reminder' flow (flows: billet_reminder: none)"
    assert "billet_reminder" not in load_rules(rules_dir).products["curso"].flows


def test_an_optional_step_passes_check_for_a_product_without_the_flow(tmp_path: Path) -> None:
    rules_dir = copy_rules(tmp_path)
    edit(rules_dir, "products/curso.yaml", BILLET, "")
    edit(
        rules_dir,
        "lifecycle.yaml",
        "do: [{trigger_flow: billet_reminder}]",
        "do: [{trigger_flow: {flow: billet_reminder, optional: true}}]",
    )
    assert check_rules(rules_dir)[1] == []
    [step] = _plan_billet(rules_dir).steps
    assert step.skip_reason == "product curso has no 'billet_reminder' flow (optional step)"
    # a product that has the flow still sends it
    rules = load_rules(rules_dir)
    combo = Planner(rules).plan("PURCHASE_BILLET_PRINTED", {}, rules.products["combo"], "new", Facts(now=NOW))
    assert combo.steps[0].skip_reason is None
    assert combo.steps[0].params["flow_ns"] == "content20261101000000_000025"


def test_a_missing_flow_that_is_not_optional_is_reported_at_the_product(tmp_path: Path) -> None:
    rules_dir = copy_rules(tmp_path)
    edit(rules_dir, "products/curso.yaml", BILLET, "")
    assert [str(p) for p in check_rules(rules_dir)[1]] == [
        resolve(
            "rules/products/curso.yaml:<<flows:>>: flows: add 'billet_reminder' (used by transition "
            "waiting_for_payment) or mark it optional",
            rules_dir,
        )
    ]


def test_a_product_without_flows_is_reported_at_its_top(tmp_path: Path) -> None:
    rules_dir = copy_rules(tmp_path)
    (rules_dir / "products" / "mentoria.yaml").write_text(
        "product:\n  key: mentoria\n  name: Mentoria\n  hotmart_product_ids: [4444444]\n", encoding="utf-8"
    )
    prefix = "rules/products/mentoria.yaml:1: flows: add"
    assert [str(p) for p in check_rules(rules_dir)[1]] == [
        f"{prefix} 'billet_reminder' (used by transition waiting_for_payment) or mark it optional",
        f"{prefix} 'onboarding' (used by transitions purchase_not_linked, new_purchase_while_onboarding, "
        "code_requested, code_expired) or mark it optional",
        f"{prefix} 'onboarding_reminder' (used by transition onboarding_reminder) or mark it optional",
        f"{prefix} 'payment_confirmed' (used by transition paid_after_all) or mark it optional",
        f"{prefix} 'refund' (used by transitions refunded, chargeback) or mark it optional",
        f"{prefix} 'welcome' (used by transitions purchase_already_linked, linked, linked_after_cancelling) "
        "or mark it optional",
    ]
