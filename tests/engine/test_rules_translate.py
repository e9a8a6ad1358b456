"""ENGINE_LANG=pt-BR: `engine check` in Brazilian Portuguese, names and values kept as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli import main
from engine.rules import check_rules
from engine.rules.translate import localize, to_portuguese
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
