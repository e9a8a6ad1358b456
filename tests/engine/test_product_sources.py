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
