"""ENGINE_LANG=pt-BR: `engine check` in Brazilian Portuguese, names and values kept as written."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli import main
from engine.rules import check_rules
from engine.rules.portuguese import LABELS, PATTERN_HINTS
from engine.rules.translate import localize, to_portuguese
from engine.sources import SOURCES
from tests.engine.test_product_sources import SOURCES_LINE
from tests.engine.test_rules_check import CASES, copy_rules, edit, resolve
from tests.engine.test_rules_messages import MESSAGE_CASES

ENGLISH = re.compile(r"unknown |did you mean|\bwrite\b|missing key|\bis not\b|e\.g\.|used by|already|\bnor\b|\bput\b")
ALL_CASES = [c for c in CASES + MESSAGE_CASES if c.expected]


@pytest.mark.parametrize("case", ALL_CASES, ids=[c.id for c in ALL_CASES])
def test_every_message_of_every_mistake_is_translated(tmp_path: Path, case) -> None:
    rules_dir = copy_rules(tmp_path)
    edit(rules_dir, case.file, case.old, case.new)
    for problem in check_rules(rules_dir)[1]:
        portuguese = localize(problem.message, "pt-BR")
        assert portuguese != problem.message
        assert not ENGLISH.search(portuguese.split("YAML inválido: ")[-1].split(" — ")[-1]), portuguese


@pytest.mark.parametrize(
    ("english", "portuguese"),
    [
        (
            "schedule after '24 hours': write a number and a unit, e.g. 24h, 7d, 30m",
            "schedule after '24 hours': escreva um número e uma unidade, ex.: 24h, 7d, 30m",
        ),
        ("unknown key 'form' — did you mean 'from'?", "chave desconhecida 'form' — você quis dizer 'from'?"),
        (
            "unknown state 'activ' in to — did you mean 'active'?",
            "estado desconhecido 'activ' em to — você quis dizer 'active'?",
        ),
        (
            'Discord role 1180000000000000004: put the id in quotes, "1180000000000000004" (YAML turns a long '
            "unquoted number into an integer)",
            'cargo do Discord 1180000000000000004: coloque o id entre aspas, "1180000000000000004" (o YAML transforma '
            "um número longo sem aspas em inteiro)",
        ),
        (
            "flows: add 'billet_reminder' (used by transition waiting_for_payment) or mark it optional",
            "flows: adicione 'billet_reminder' (usado pela transição waiting_for_payment) ou marque o passo como "
            "opcional",
        ),
        ('name 123: put it in quotes, "123"', 'name 123: coloque entre aspas, "123"'),
        ("alert a list: write text", "alert a list: escreva texto"),
        ("max 0: write 1 or more", "max 0: escreva 1 ou mais"),
        ("reason is empty: write some text", "reason está vazio: escreva um texto"),
        ("from: list at least 1 item(s)", "from: liste pelo menos 1 item(ns)"),
        ("an empty step: write an action, e.g. add_role", "um passo vazio: escreva uma ação, ex.: add_role"),
        (
            "schedule: give the event and either after or at, e.g. {event: GRACE_EXPIRED, after: 7d}",
            "schedule: informe o evento e after ou at, ex.: {event: GRACE_EXPIRED, after: 7d}",
        ),
        (
            "add_role: write at least 1 key(s), or leave it bare",
            "add_role: escreva pelo menos 1 chave(s), ou deixe o passo sem parâmetros",
        ),
        ("empty file", "arquivo vazio"),
        (
            "payment event ORDER_FULFILLMENT has no transition and is not listed under ignore: give it a deliberate "
            "outcome (a transition, or an ignore entry with a reason)",
            "o evento de pagamento ORDER_FULFILLMENT não tem transição nem está em ignore: dê a ele um destino "
            "deliberado (uma transição, ou um item de ignore com o motivo)",
        ),
        (
            "rules/lifecycle.yaml:40: transition 'purchase_not_linked' is not covered by any rule test",
            "rules/lifecycle.yaml:40: a transição 'purchase_not_linked' não é coberta por nenhum teste de regras",
        ),
        (
            "ignore entry for PURCHASE_OUT_OF_SHOPPING_CART is not covered by any rule test",
            "o item de ignore de PURCHASE_OUT_OF_SHOPPING_CART não é coberto por nenhum teste de regras",
        ),
        (
            "ok: 6 files, 3 products, 9 states, 20 transitions, 2 warning(s)",
            "ok: 6 arquivos, 3 produtos, 9 estados, 20 transições, 2 aviso(s)",
        ),
        ("ok: 6 files, 3 products, 9 states, 20 transitions", "ok: 6 arquivos, 3 produtos, 9 estados, 20 transições"),
        ("rules directory not found", "pasta de regras não encontrada"),
        ("something new the table does not know", "something new the table does not know"),
    ],
)
def test_exact_portuguese(english: str, portuguese: str) -> None:
    assert to_portuguese(english) == portuguese


def test_english_unless_portuguese_is_asked_for(monkeypatch) -> None:
    message = "unknown key 'form' — did you mean 'from'?"
    monkeypatch.delenv("ENGINE_LANG", raising=False)
    assert localize(message) == message
    monkeypatch.setenv("ENGINE_LANG", "pt-BR")
    assert localize(message) == "chave desconhecida 'form' — você quis dizer 'from'?"
    assert localize(message, "en") == message


def test_cli_check_in_portuguese(tmp_path: Path) -> None:
    rules_dir = copy_rules(tmp_path)
    edit(
        rules_dir, "lifecycle.yaml", "      from: [new, refunded, churned]\n", "      form: [new, refunded, churned]\n"
    )
    result = CliRunner().invoke(main, ["check", "--rules", str(rules_dir)], env={"ENGINE_LANG": "pt-BR"})
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        resolve("rules/lifecycle.yaml:<<form:>>: chave desconhecida 'form' — você quis dizer 'from'?", rules_dir),
        f"1 erro(s) em {rules_dir}",
    ]


def test_cli_check_of_valid_rules_in_portuguese(tmp_path: Path) -> None:
    """Notes, the deprecation, the warnings and the closing line of a valid check."""
    rules_dir = copy_rules(tmp_path)
    edit(rules_dir, "products/curso.yaml", SOURCES_LINE, "  hotmart_product_ids: [1111111]\n")
    (rules_dir / "notes.txt").write_text("not rules\n")
    shutil.rmtree(rules_dir / "tests")
    result = CliRunner().invoke(main, ["check", "--rules", str(rules_dir)], env={"ENGINE_LANG": "pt-BR"})
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        "nota: rules/notes.txt ignorado: só rules/*.yaml e rules/products/*.yaml são regras",
        "nota: rules/products/curso.yaml:6: hotmart_product_ids está obsoleto: escreva sources: {hotmart: [1111111]}",
        f"aviso: nenhum teste de regras em {rules_dir / 'tests'}: `engine test` não tem o que rodar",
    ]
    assert re.fullmatch(r"ok: \d+ arquivos, 3 produtos, \d+ estados, \d+ transições, 1 aviso\(s\)\n", result.stdout)


# --- every source's messages ----------------------------------------------------------------


def source_mistakes(rules_dir: Path, name: str) -> None:
    """Three mistakes about one platform's ids: the same id claimed by two products, an id listed
    as unmanaged that a product claims, an id of the wrong shape."""
    example = SOURCES[name].product_id_example
    if name == "hotmart":
        edit(rules_dir, "products/combo.yaml", "    hotmart: [3333333]\n", "    hotmart: [3333333, 1111111]\n")
        claimed = "1111111"
    else:
        for product, line in (("curso", "    hotmart: [1111111]\n"), ("combo", "    hotmart: [3333333]\n")):
            edit(rules_dir, f"products/{product}.yaml", line, f"{line}    {name}: [{example}]\n")
        claimed = example
    catalog = rules_dir / "catalog.yaml"
    catalog.write_text(catalog.read_text() + f"  unmanaged_products: {{{name}: [{claimed}, x_y]}}\n")


@pytest.mark.parametrize("name", list(SOURCES))
def test_every_sources_id_messages_are_translated(tmp_path: Path, name: str) -> None:
    rules_dir = copy_rules(tmp_path)
    source_mistakes(rules_dir, name)
    problems = check_rules(rules_dir)[1]
    messages = [problem.message for problem in problems if "x_y" in problem.message]  # the wrong shape
    assert len(messages) == 1, problems
    source_mistakes(copy_rules(tmp_path / "claims"), name)  # the same, with a well-formed listing
    claims = tmp_path / "claims" / "rules"
    catalog = claims / "catalog.yaml"
    catalog.write_text(catalog.read_text().replace(", x_y]", "]"))
    claim_messages = [problem.message for problem in check_rules(claims)[1]]
    assert any("already claimed" in m for m in claim_messages), claim_messages
    assert any("listed as unmanaged" in m for m in claim_messages), claim_messages
    for message in messages + claim_messages:
        portuguese = localize(message, "pt-BR")
        assert portuguese != message
        assert not ENGLISH.search(portuguese), portuguese
        assert SOURCES[name].title in portuguese


@pytest.mark.parametrize("name", list(SOURCES))
def test_the_already_claimed_message_in_portuguese_for_every_source(name: str) -> None:
    title = SOURCES[name].title
    english = f"{title} product x1 is already claimed by product 'combo' (rules/products/combo.yaml)"
    assert to_portuguese(english) == f"o produto {title} x1 já pertence ao produto 'combo' (rules/products/combo.yaml)"
    unmanaged = f"{title} product x1 is listed as unmanaged but product 'curso' (rules/products/curso.yaml) claims it"
    assert to_portuguese(unmanaged) == (
        f"o produto {title} x1 está em unmanaged_products, mas pertence ao produto 'curso' (rules/products/curso.yaml)"
    )


def test_every_source_has_its_label_and_id_hint_in_portuguese() -> None:
    for source in SOURCES.values():
        assert f"{source.title} product id" in LABELS
        assert source.product_id_hint in PATTERN_HINTS


@pytest.mark.parametrize(
    ("english", "portuguese"),
    [
        (
            "product 'curso' claims no product id: add sources: {hotmart: [1111111], kiwify: [\"a1b2c3\"], "
            "eduzz: [123456]}",
            "o produto 'curso' não declara nenhum id de produto: adicione sources: {hotmart: [1111111], "
            'kiwify: ["a1b2c3"], eduzz: [123456]}',
        ),
        (
            "hotmart_product_ids and sources.hotmart both list ids: keep sources.hotmart",
            "hotmart_product_ids e sources.hotmart listam ids: mantenha só sources.hotmart",
        ),
        (
            "Eduzz product id '12ab': an Eduzz product id is digits only, e.g. 123456",
            "id de produto Eduzz '12ab': um id de produto Eduzz só tem dígitos, ex.: 123456",
        ),
    ],
)
def test_the_sources_messages_in_portuguese(english: str, portuguese: str) -> None:
    assert to_portuguese(english) == portuguese
