"""A product claims ids per source (issue 23): `sources: {hotmart: [...], kiwify: [...]}`, the
older `hotmart_product_ids` still read with a note, an id claimed twice within one source refused."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from engine.cli import main
from engine.rules import check_rules, load_rules
from tests.engine.test_rules_check import copy_rules, edit

SOURCES_LINE = "  sources:                # the product's ids on each platform that sells it\n    hotmart: [1111111]\n"


def test_the_shipped_products_claim_their_ids_per_source():
    rules = load_rules(Path("rules"))
    assert rules.products["curso"].source_ids == {"hotmart": ("1111111",)}
    assert rules.product_for("hotmart", "1111111").key == "curso"
    assert rules.product_for("kiwify", "1111111") is None  # an id means something on its own platform only
    assert rules.deprecations == ()


def test_hotmart_product_ids_still_works_with_a_deprecation_note(tmp_path):
    rules_dir = copy_rules(tmp_path)
    edit(rules_dir, "products/curso.yaml", SOURCES_LINE, "  hotmart_product_ids: [1111111]\n")
    rules, problems = check_rules(rules_dir)
    assert problems == []
    assert rules.product_for("hotmart", "1111111").key == "curso"
    result = CliRunner().invoke(main, ["check", "--rules", str(rules_dir)])
    assert result.exit_code == 0
    assert result.stderr.splitlines() == [
        "note: rules/products/curso.yaml:6: hotmart_product_ids is deprecated: write sources: {hotmart: [1111111]}"
    ]


def test_an_id_claimed_twice_within_one_source_is_refused(tmp_path):
    rules_dir = copy_rules(tmp_path)
    claim = '    kiwify: ["a1b2c3"]\n'
    edit(rules_dir, "products/curso.yaml", "    hotmart: [1111111]\n", "    hotmart: [1111111]\n" + claim)
    edit(rules_dir, "products/combo.yaml", "    hotmart: [3333333]\n", "    hotmart: [3333333]\n" + claim)
    _, problems = check_rules(rules_dir)
    assert [str(p) for p in problems] == [
        "rules/products/curso.yaml:8: Kiwify product a1b2c3 is already claimed by product 'combo' "
        "(rules/products/combo.yaml)"
    ]


def test_the_same_id_on_two_sources_is_two_claims(tmp_path):
    rules_dir = copy_rules(tmp_path)
    edit(rules_dir, "products/curso.yaml", "    hotmart: [1111111]\n", "    hotmart: [1111111]\n    eduzz: [3333333]\n")
    rules, problems = check_rules(rules_dir)
    assert problems == []
    assert rules.product_for("eduzz", "3333333").key == "curso"
    assert rules.product_for("hotmart", "3333333").key == "combo"


def test_an_unknown_source_is_refused(tmp_path):
    rules_dir = copy_rules(tmp_path)
    edit(rules_dir, "products/curso.yaml", "    hotmart: [1111111]\n", "    hotmart: [1111111]\n    monetizze: [1]\n")
    _, problems = check_rules(rules_dir)
    assert len(problems) == 1 and "monetizze" in str(problems[0])


def test_a_product_without_any_id_is_refused(tmp_path):
    rules_dir = copy_rules(tmp_path)
    edit(rules_dir, "products/curso.yaml", SOURCES_LINE, "")
    _, problems = check_rules(rules_dir)
    assert [str(p) for p in problems] == [
        "rules/products/curso.yaml:2: product 'curso' claims no product id: add sources: {hotmart: [1111111], "
        'kiwify: ["a1b2c3"], eduzz: [123456]}'
    ]


def test_new_product_takes_each_sources_id(tmp_path):
    rules_dir = copy_rules(tmp_path)
    args = ["new-product", "mentoria", "--hotmart-id", "4444444", "--kiwify-id", "x9y8z7", "--eduzz-id", "777"]
    result = CliRunner().invoke(main, [*args, "--rules", str(rules_dir)])
    assert result.exit_code == 0, result.output
    rules = load_rules(rules_dir)
    assert rules.products["mentoria"].source_ids == {"hotmart": ("4444444",), "kiwify": ("x9y8z7",), "eduzz": ("777",)}
    again = CliRunner().invoke(
        main, ["new-product", "outro", "--hotmart-id", "5555555", "--kiwify-id", "x9y8z7", "--rules", str(rules_dir)]
    )
    assert again.exit_code == 2
    assert "Kiwify product x9y8z7 is already claimed by product 'mentoria'" in again.stderr


def test_doctor_checks_the_secret_of_each_enabled_source():
    from engine.doctor.core import secret_checks
    from engine.settings import Settings

    settings = Settings(ENGINE_ENV="development", hotmart_hottok="h", kiwify_enabled=True, eduzz_enabled=False)
    messages = [check.message for check in secret_checks(settings)]
    assert any(m.startswith("KIWIFY_TOKEN is not set") for m in messages)
    assert not any("EDUZZ_SECRET" in m for m in messages)  # off: not checked
    assert any(m.startswith("HOTMART_HOTTOK set") for m in messages)


def test_a_source_turned_on_without_its_secret_refuses_to_start_outside_development():
    import pytest

    from engine.settings import Settings

    with pytest.raises(ValueError, match="EDUZZ_ENABLED needs EDUZZ_SECRET"):
        Settings(ENGINE_ENV="production", hotmart_hottok="h" * 32, admin_api_token="a" * 32, eduzz_enabled=True)


def test_dry_run_reads_any_sources_payload(tmp_path):
    rules_dir = copy_rules(tmp_path)
    edit(
        rules_dir, "products/curso.yaml", "    hotmart: [1111111]\n", '    hotmart: [1111111]\n    kiwify: ["a1b2c3"]\n'
    )
    payload = str(Path("tests/data/kiwify/order_approved.json"))
    for args in ([payload], ["--source", "kiwify", payload]):
        result = CliRunner().invoke(main, ["dry-run", *args, "--rules", str(rules_dir)])
        assert result.exit_code == 0, result.output
        lines = result.stdout.splitlines()
        assert lines[0] == "event       PURCHASE_APPROVED  (kiwify)"
        assert lines[2].startswith("product     curso")
    wrong = CliRunner().invoke(main, ["dry-run", "--source", "monetizze", payload, "--rules", str(rules_dir)])
    assert wrong.exit_code == 2
