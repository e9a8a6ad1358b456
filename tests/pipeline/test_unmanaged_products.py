"""catalog.unmanaged_products per source (issue 23): the plain list keeps meaning Hotmart's ids; a
mapping lists each platform's, so a Kiwify or Eduzz product the course sells outside the engine is
ignored with its reason instead of needing attention."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from engine.rules import check_rules
from engine.rules.loader import SCHEMA_PATH
from engine.rules.schema import generated
from tests.conftest import RULES
from tests.pipeline.test_attention import alerts, deliver, purchase
from tests.pipeline.test_source_stories import deliver as deliver_from
from tests.pipeline.test_source_stories import event

KIWIFY_ID, EDUZZ_ID = "a1b2c3", "123456"  # the fixtures' products, which no shipped product claims


@pytest.fixture
def rules_dir(tmp_path) -> Path:
    target = tmp_path / "rules"
    shutil.copytree(RULES, target)
    return target


def unmanaged(rules_dir: Path, listed: str) -> None:
    catalog = rules_dir / "catalog.yaml"
    catalog.write_text(catalog.read_text() + f"  unmanaged_products: {listed}\n")


def test_the_schema_part_is_the_sources_registry():
    """config.schema.json's sources: and unmanaged_products are what the registry declares
    (regenerate with `python -m engine.rules.schema`)."""
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    assert generated(schema) == schema
    assert set(schema["$defs"]["catalog"]["properties"]["unmanaged_products"]["properties"]) == {
        "hotmart",
        "kiwify",
        "eduzz",
    }


def test_kiwify_and_eduzz_products_listed_per_source_are_plainly_ignored(make_harness, rules_dir):
    unmanaged(rules_dir, f'{{hotmart: [7777777], kiwify: ["{KIWIFY_ID}"], eduzz: [{EDUZZ_ID}]}}')
    h = make_harness(rules_dir=rules_dir)
    [kiwify] = deliver_from(h, "kiwify", "order_approved")
    [eduzz] = deliver_from(h, "eduzz", "invoice_paid")
    hotmart = event(h, deliver(h, purchase()))
    assert (event(h, kiwify).status, event(h, kiwify).reason) == (
        "ignored",
        f"product id {KIWIFY_ID} is unmanaged (catalog.unmanaged_products.kiwify)",
    )
    assert (event(h, eduzz).status, event(h, eduzz).reason) == (
        "ignored",
        f"product id {EDUZZ_ID} is unmanaged (catalog.unmanaged_products.eduzz)",
    )
    assert (hotmart.status, hotmart.reason) == (
        "ignored",
        "product id 7777777 is unmanaged (catalog.unmanaged_products)",
    )
    assert alerts(h) == []


def test_the_plain_list_is_hotmarts_ids_only(make_harness, rules_dir):
    """An Eduzz product with the same digits as a listed Hotmart id is not unmanaged: it needs
    attention, and the advice names the Eduzz list."""
    unmanaged(rules_dir, f"[{EDUZZ_ID}]")
    h = make_harness(rules_dir=rules_dir)
    [eduzz] = deliver_from(h, "eduzz", "invoice_paid")
    assert (event(h, eduzz).status, event(h, eduzz).reason) == (
        "needs_attention",
        f"no product matches id {EDUZZ_ID}",
    )
    [alert] = alerts(h)
    assert "catalog.unmanaged_products.eduzz" in alert.message


def test_an_unknown_kiwify_product_needs_attention_naming_its_list(make_harness, rules_dir):
    h = make_harness(rules_dir=rules_dir)
    [kiwify] = deliver_from(h, "kiwify", "order_approved")
    assert event(h, kiwify).status == "needs_attention"
    [alert] = alerts(h)
    assert "or list it under catalog.unmanaged_products.kiwify)" in alert.message


def test_a_listed_id_a_product_claims_on_that_source_is_a_rules_error(rules_dir):
    curso = rules_dir / "products" / "curso.yaml"
    text = curso.read_text()
    hotmart_line = next(line for line in text.splitlines(keepends=True) if line.startswith("    hotmart: ["))
    curso.write_text(text.replace(hotmart_line, hotmart_line + f'    kiwify: ["{KIWIFY_ID}"]\n'))
    unmanaged(rules_dir, f'{{hotmart: [1111111], kiwify: ["zz9", "{KIWIFY_ID}"]}}')
    _, problems = check_rules(rules_dir)
    assert [(p.file, p.line) for p in problems] == [("rules/catalog.yaml", 10), ("rules/catalog.yaml", 10)]
    assert "Hotmart product 1111111 is listed as unmanaged but product 'curso'" in problems[0].message
    assert f"Kiwify product {KIWIFY_ID} is listed as unmanaged but product 'curso'" in problems[1].message


def test_the_same_id_on_another_source_is_no_conflict(rules_dir):
    """curso claims Hotmart 1111111; an Eduzz product 1111111 may well be sold outside the engine."""
    unmanaged(rules_dir, "{eduzz: [1111111]}")
    rules, problems = check_rules(rules_dir)
    assert problems == []
    assert rules.unmanaged_products == {"eduzz": frozenset({"1111111"})}


@pytest.mark.parametrize(
    ("listed", "expected"),
    [
        ('{stripe: ["prod_1"]}', "stripe"),  # not a source
        ("{kiwify: [a_b]}", "Kiwify product id"),  # not a Kiwify id
        ("{eduzz: [12ab]}", "Eduzz product id"),
        ("[abc]", "Hotmart product id is digits only"),
    ],
)
def test_engine_check_refuses_a_wrong_listing(rules_dir, listed, expected):
    unmanaged(rules_dir, listed)
    _, problems = check_rules(rules_dir)
    assert problems and expected in problems[0].message, problems
    assert (problems[0].file, problems[0].line) == ("rules/catalog.yaml", 10)
