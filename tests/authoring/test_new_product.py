"""``engine new-product``: a commented product file, its catalog tag and rule test, then the checks."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from engine.cli import main
from engine.rules import load_rules
from tests.engine.test_rules_check import copy_rules

ONE_TIME_FLOWS = ["onboarding", "welcome", "payment_confirmed", "onboarding_reminder", "billet_reminder", "refund"]


def new_product(rules_dir: Path, *args: str):
    return CliRunner().invoke(main, ["new-product", *args, "--rules", str(rules_dir)])


def test_a_one_time_product_lists_every_flow_and_passes_check(tmp_path: Path) -> None:
    rules_dir = copy_rules(tmp_path)
    result = new_product(rules_dir, "mentoria", "--hotmart-id", "4444444")
    assert result.exit_code == 0, result.output
    path = rules_dir / "products" / "mentoria.yaml"
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# yaml-language-server: $schema=../../config.schema.json\n")
    assert f"{'    onboarding: none':<33} # TODO: flow ns; sent by purchase_not_linked, " in text
    spec = yaml.safe_load(text)["product"]
    assert spec["key"] == "mentoria" and spec["kind"] == "one_time"
    assert spec["sources"] == {"hotmart": [4444444]} and "hotmart_product_ids" not in spec
    assert list(spec["flows"]) == ONE_TIME_FLOWS
    assert set(spec["flows"].values()) == {"none"}
    assert spec["access"] == {"discord_roles": [], "manychat_tags": ["aluno-mentoria"], "classes": []}
    # the catalog gained the tag, comments and the rest kept
    catalog = (rules_dir / "catalog.yaml").read_text(encoding="utf-8")
    assert "    tags: [aluno-curso, assinante, ex-assinante, aluno-mentoria]\n" in catalog
    assert "# true: create a WhatsApp contact" in catalog
    lines = result.stdout.splitlines()
    assert lines[0] == f"wrote {path}"
    assert lines[1] == "added tag 'aluno-mentoria' to catalog.yaml (manychat: tags:)"
    assert lines[2] == f"wrote {rules_dir / 'tests' / 'mentoria.yaml'} (a rule test: engine test)"
    assert lines[3] == (
        f"next: paste the ManyChat flow namespace of {', '.join(ONE_TIME_FLOWS)} in mentoria.yaml "
        "(until then each is `none`: the step is skipped)"
    )
    assert lines[-1].startswith("ok: 7 files, 4 products, ")
    assert load_rules(rules_dir).products["mentoria"].no_flows == frozenset(ONE_TIME_FLOWS)


def test_the_rule_test_it_writes_passes(tmp_path: Path) -> None:
    rules_dir = copy_rules(tmp_path)
    assert new_product(rules_dir, "mentoria", "--hotmart-id", "4444444").exit_code == 0
    case = yaml.safe_load((rules_dir / "tests" / "mentoria.yaml").read_text(encoding="utf-8"))["tests"][0]
    assert case["product"] == "mentoria"
    assert case["events"][0]["expect"] == {
        "transition": "purchase_not_linked",
        "state": "pending_onboarding",
        "steps": ["issue_token", {"add_tag": "aluno-mentoria"}],
    }
    result = CliRunner().invoke(main, ["test", "--rules", str(rules_dir)])
    assert result.exit_code == 0, result.output


def test_a_subscription_gets_the_subscription_flows_and_its_roles(tmp_path: Path) -> None:
    rules_dir = copy_rules(tmp_path)
    result = new_product(
        rules_dir,
        "clube",
        "--hotmart-id",
        "5555555",
        "--subscription",
        "--name",
        'Clube "VIP"',
        "--role",
        "1180000000000000009",
        "--tag",
        "assinante",
    )
    assert result.exit_code == 0, result.output
    spec = yaml.safe_load((rules_dir / "products" / "clube.yaml").read_text(encoding="utf-8"))["product"]
    assert (spec["kind"], spec["name"]) == ("subscription", 'Clube "VIP"')
    assert set(spec["flows"]) == {*ONE_TIME_FLOWS, "payment_late", "churn"}
    assert spec["access"]["discord_roles"] == ["1180000000000000009"]
    assert spec["access"]["manychat_tags"] == ["assinante"]  # already in the catalog: not added twice
    assert "added tag" not in result.stdout
    assert "discord_roles" not in result.stdout  # no "next: list the Discord role ids"


def test_refusals_write_nothing(tmp_path: Path) -> None:
    rules_dir = copy_rules(tmp_path)
    before = sorted(p.name for p in rules_dir.rglob("*"))
    for args, message in [
        (["curso", "--hotmart-id", "4444444"], "error: product 'curso' already exists (rules/products/curso.yaml)"),
        (
            ["mentoria", "--hotmart-id", "1111111"],
            "error: Hotmart product 1111111 is already claimed by product 'curso' (rules/products/curso.yaml)",
        ),
        (
            ["Mentoria", "--hotmart-id", "4444444"],
            "error: product key 'Mentoria': use lowercase letters, digits, _ and - , starting with a letter, "
            "e.g. mentoria",
        ),
        (
            ["mentoria", "--hotmart-id", "12a"],
            "error: --hotmart-id '12a': a Hotmart product id is digits only, e.g. 4444444",
        ),
        (
            ["mentoria", "--hotmart-id", "4444444", "--role", "alunos"],
            "error: --role 'alunos': a Discord id is 15 to 21 digits (right-click the role > Copy Role ID)",
        ),
    ]:
        result = new_product(rules_dir, *args)
        assert result.exit_code == 2, result.output
        assert result.stderr.splitlines() == [message]
    assert sorted(p.name for p in rules_dir.rglob("*")) == before


def test_invalid_rules_are_reported_before_anything_is_written(tmp_path: Path) -> None:
    rules_dir = copy_rules(tmp_path)
    (rules_dir / "products" / "curso.yaml").write_text("product:\n  key: curso\n", encoding="utf-8")
    result = new_product(rules_dir, "mentoria", "--hotmart-id", "4444444")
    assert result.exit_code == 1
    assert not (rules_dir / "products" / "mentoria.yaml").exists()
