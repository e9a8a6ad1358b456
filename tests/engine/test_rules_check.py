"""Broken rules: each case copies the shipped ``rules/``, breaks one thing, and expects the
exact ``file:line: message`` list from ``check_rules`` (and from ``engine check``)."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from engine.cli import main
from engine.rules import check_rules, load_rules
from engine.rules.loader import RulesError
from engine.rules.source import Problem

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "rules"

STATES = "new, pending_payment, pending_onboarding, active, overdue, cancelled, disputed, churned, refunded"
ACTIONS = (
    "add_role, add_tag, alert, cancel_timers, enroll, issue_token, remove_role, remove_tag, "
    "revoke_token, schedule, send_dm, set_field, trigger_flow, unenroll"
)
PREDICATES = (
    "date_next_charge_passed, discord_account_changed, discord_linked, is_renewal, is_test_event, same_transaction"
)
TEMPLATE_HINT = "(known: token, product.key, product.name, student.email, student.name, event.<field>)"


def copy_rules(tmp_path: Path) -> Path:
    target = tmp_path / "rules"
    shutil.copytree(RULES, target)
    return target


def edit(rules_dir: Path, file: str, old: str, new: str) -> None:
    path = rules_dir / file
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} must occur once in {file}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def lines_with(rules_dir: Path, file: str, needle: str) -> list[int]:
    text = (rules_dir / file).read_text(encoding="utf-8")
    # a needle may hold "\n" to anchor it at the start or end of its line
    return [number for number, line in enumerate(text.splitlines(), 1) if needle in f"\n{line}\n"]


_AT_FILE = re.compile(r"^rules/([^:]+):<<(.+?)>>", re.DOTALL)
_AT_LIFECYCLE = re.compile(r"<<(.+?)>>", re.DOTALL)


def resolve(expected: str, rules_dir: Path) -> str:
    """``rules/F:<<text>>: ...`` -> the number of the one line of F holding ``text``.

    Other ``<<text>>`` name a line of lifecycle.yaml. Locating lines by their text keeps the
    assertions exact while the shipped rules gain or lose lines.
    """

    def line(file: str, needle: str) -> str:
        found = lines_with(rules_dir, file, needle)
        assert len(found) == 1, f"{needle!r} must be on exactly one line of {file}: {found}"
        return str(found[0])

    expected = _AT_FILE.sub(lambda m: f"rules/{m[1]}:{line(m[1], m[2])}", expected)
    return _AT_LIFECYCLE.sub(lambda m: line("lifecycle.yaml", m[1]), expected)


@dataclass(frozen=True)
class Broken:
    id: str
    file: str
    old: str
    new: str
    expected: tuple[str, ...]


CASES = [
    Broken(
        "unknown-state-in-from",
        "lifecycle.yaml",
        "      from: [new, refunded, churned]\n",
        "      from: [new, refundd, churned]\n",
        ("rules/lifecycle.yaml:<<refundd>>: unknown state 'refundd' in from — did you mean 'refunded'?",),
    ),
    Broken(
        "unknown-state-in-to",
        "lifecycle.yaml",
        "      from: pending_payment\n      to: new\n",
        "      from: pending_payment\n      to: nwe\n",
        ("rules/lifecycle.yaml:<<to: nwe>>: unknown state 'nwe' in to — did you mean 'new'?",),
    ),
    Broken(
        "unknown-event",
        "lifecycle.yaml",
        "      on: MEMBER_JOINED\n",
        "      on: MEMBER_JOIND\n",
        ("rules/lifecycle.yaml:<<MEMBER_JOIND>>: unknown event 'MEMBER_JOIND' — did you mean 'MEMBER_JOINED'?",),
    ),
    Broken(
        "unknown-event-without-a-near-name",
        "lifecycle.yaml",
        "      on: MEMBER_JOINED\n",
        "      on: STUDENT_CAME_BACK\n",
        (
            "rules/lifecycle.yaml:<<STUDENT_CAME_BACK>>: unknown event 'STUDENT_CAME_BACK': neither a Hotmart "
            "event nor declared under lifecycle.events",
        ),
    ),
    Broken(
        "unknown-event-in-a-list",
        "lifecycle.yaml",
        "      on: [PURCHASE_EXPIRED, PURCHASE_CANCELED]\n",
        "      on: [PURCHASE_EXPIRED, PURCHASE_CANCELLED]\n",
        (
            "rules/lifecycle.yaml:<<PURCHASE_CANCELLED>>: unknown event 'PURCHASE_CANCELLED' — did you mean "
            "'PURCHASE_CANCELED'?",
        ),
    ),
    Broken(
        # a schema failure of the lifecycle file must not also claim there is no lifecycle file
        "unknown-action",
        "lifecycle.yaml",
        "      do: [add_role]\n",
        "      do: [add_rol]\n",
        ("rules/lifecycle.yaml:<<[add_rol]>>: unknown action 'add_rol' — did you mean 'add_role'?",),
    ),
    Broken(
        "unknown-action-without-a-near-name",
        "lifecycle.yaml",
        "      do: [add_role]\n",
        "      do: [give_access]\n",
        (f"rules/lifecycle.yaml:<<[give_access]>>: unknown action 'give_access' (known: {ACTIONS})",),
    ),
    Broken(
        "unknown-action-with-params",
        "lifecycle.yaml",
        "        - remove_role: {account: previous}\n",
        "        - remove_roles: {account: previous}\n",
        ("rules/lifecycle.yaml:<<remove_roles>>: unknown action 'remove_roles' — did you mean 'remove_role'?",),
    ),
    Broken(
        "flow-a-product-lacks",
        "products/curso.yaml",
        "    payment_confirmed: content20261101000000_000006\n",
        "",
        # reported in the product file, where the fix is
        (
            "rules/products/curso.yaml:<<flows:>>: flows: add 'payment_confirmed' (used by transition "
            "paid_after_all) or mark it optional",
        ),
    ),
    Broken(
        # kind: subscription -> only the subscription products must define it
        "flow-of-a-subscription-rule",
        "lifecycle.yaml",
        "        - trigger_flow: payment_late\n",
        "        - trigger_flow: dunning\n",
        (
            "rules/products/combo.yaml:<<flows:>>: flows: add 'dunning' (used by transition payment_late) "
            "or mark it optional",
            "rules/products/comunidade.yaml:<<flows:>>: flows: add 'dunning' (used by transition "
            "payment_late) or mark it optional",
        ),
    ),
    Broken(
        # a misspelt flow name: one error at the step, not one per product
        "misspelt-flow-in-a-step",
        "lifecycle.yaml",
        "        - trigger_flow: payment_late\n",
        "        - trigger_flow: payment_lat\n",
        (
            "rules/lifecycle.yaml:<<trigger_flow: payment_lat>>: no product declares flow 'payment_lat' — did you "
            "mean 'payment_late'?",
        ),
    ),
    Broken(
        # the step is shared by three transitions through a YAML anchor: reported once
        "tag-not-in-catalog",
        "lifecycle.yaml",
        "        - add_tag: ex-assinante\n",
        "        - add_tag: ex-aluno\n",
        (
            "rules/lifecycle.yaml:<<ex-aluno>>: tag 'ex-aluno' is not in catalog.manychat.tags: add it there "
            "(catalog.yaml) or use one of: aluno-curso, assinante, ex-assinante",
        ),
    ),
    Broken(
        "product-tag-not-in-catalog",
        "products/curso.yaml",
        "    manychat_tags: [aluno-curso]\n",
        "    manychat_tags: [aluno]\n",
        (
            "rules/products/curso.yaml:<<[aluno]>>: tag 'aluno' is not in catalog.manychat.tags — did you mean "
            "'aluno-curso'?",
        ),
    ),
    Broken(
        "undefined-custom-field",
        "lifecycle.yaml",
        '        - set_field: {name: codigo_discord, value: "{token}"}  # field first',
        '        - set_field: {name: codigo, value: "{token}"}  # field first',
        (
            "rules/lifecycle.yaml:<<name: codigo,>>: custom field 'codigo' is not in catalog.manychat.fields — did "
            "you mean 'codigo_discord'?",
        ),
    ),
    Broken(
        "class-not-in-catalog",
        "lifecycle.yaml",
        "      do: [add_tag, add_role, enroll, {trigger_flow: welcome}]",
        "      do: [add_tag, add_role, {enroll: curso-2025}, {trigger_flow: welcome}]",
        (
            "rules/lifecycle.yaml:<<curso-2025>>: class 'curso-2025' is not in catalog.classes — did you mean "
            "'curso-2026'?",
        ),
    ),
    Broken(
        "product-class-not-in-catalog",
        "products/combo.yaml",
        "    classes: [curso-2026]\n",
        "    classes: [curso-2025]\n",
        (
            "rules/products/combo.yaml:<<curso-2025>>: class 'curso-2025' is not in catalog.classes — did you mean "
            "'curso-2026'?",
        ),
    ),
    Broken(
        "hotmart-id-claimed-twice",
        "products/comunidade.yaml",
        "[2222222]",
        "[2222222, 1111111]",
        (
            "rules/products/curso.yaml:<<hotmart: [1111111]>>: Hotmart product 1111111 is already claimed by "
            "product 'comunidade' (rules/products/comunidade.yaml)",
        ),
    ),
    Broken(
        "unreachable-state",
        "lifecycle.yaml",
        "      to: disputed\n",
        "      to: active\n",
        (
            "rules/lifecycle.yaml:<<- disputed>>: state 'disputed' is unreachable: no transition leads to it (add one "
            "with `to: disputed`, or remove the state)",
        ),
    ),
    Broken(
        # the first rule loses its `unless`: both can hold from pending_onboarding
        "shadowing-transitions",
        "lifecycle.yaml",
        "      unless: {any: [is_renewal, discord_linked]}",
        "",
        (
            "rules/lifecycle.yaml:<<name: renewal_while_onboarding>>: transition 'renewal_while_onboarding' "
            "overlaps 'new_purchase_while_onboarding' (line <<name: new_purchase_while_onboarding>>) on "
            "PURCHASE_APPROVED from 'pending_onboarding': both conditions can hold, so the first one always wins; "
            "make their conditions exclusive (if/unless the same predicate)",
        ),
    ),
    Broken(
        "shadowing-without-conditions",
        "lifecycle.yaml",
        "      on: ONBOARDING_REMINDER\n      from: pending_onboarding\n",
        "      on: TOKEN_EXPIRED\n      from: pending_onboarding\n",
        (
            "rules/lifecycle.yaml:<<name: code_expired>>: transition 'code_expired' overlaps 'onboarding_reminder' "
            "(line <<name: onboarding_reminder>>) on TOKEN_EXPIRED from 'pending_onboarding': both conditions can "
            "hold, so the first one always wins; make their conditions exclusive (if/unless the same predicate)",
        ),
    ),
    Broken(
        # the lifecycle file exists: no extra "no lifecycle file"
        "invalid-yaml",
        "lifecycle.yaml",
        "  initial: new\n",
        "  initial: [new\n",
        (
            "rules/lifecycle.yaml:<<  states:>>: invalid YAML: did not find expected ',' or ']' — a [ or { opened on "
            "this line or above is not closed, or a value holds a comma (quote it)",
        ),
    ),
    Broken(
        "unknown-predicate",
        "lifecycle.yaml",
        "      if: discord_account_changed\n",
        "      if: discord_acount_changed\n",
        # one mistake, one error: `relinked` no longer excluding `linked_after_cancelling` is not reported
        (
            "rules/lifecycle.yaml:<<discord_acount_changed>>: unknown predicate 'discord_acount_changed' — did you "
            "mean 'discord_account_changed'?",
        ),
    ),
    Broken(
        "unknown-predicate-without-a-near-name",
        "lifecycle.yaml",
        "      if: discord_account_changed\n",
        "      if: has_paid\n",
        (f"rules/lifecycle.yaml:<<has_paid>>: unknown predicate 'has_paid' (known: {PREDICATES})",),
    ),
    Broken(
        "unknown-event-field",
        "lifecycle.yaml",
        "    is_renewal: {field: recurrence_number, gt: 1}\n",
        "    is_renewal: {field: recurrence, gt: 1}\n",
        (
            "rules/lifecycle.yaml:<<field: recurrence,>>: unknown event field 'recurrence' — did you mean "
            "'recurrence_number'?",
        ),
    ),
    Broken(
        "unknown-event-field-without-a-near-name",
        "lifecycle.yaml",
        "    is_renewal: {field: recurrence_number, gt: 1}\n",
        "    is_renewal: {field: cycle, gt: 1}\n",
        (
            "rules/lifecycle.yaml:<<field: cycle,>>: unknown event field 'cycle' (known: creation_date, "
            "date_next_charge, email, event_type, is_test, name, offer_code, payment_type, phone, plan_id, "
            "plan_name, product_id, purchase_status, recurrence_number, source, source_event, subscriber_code, "
            "transaction)",
        ),
    ),
    Broken(
        "unknown-template-variable",
        "lifecycle.yaml",
        "em {product.name} (transação",
        "em {product.title} (transação",
        (
            "rules/lifecycle.yaml:<<product.title>>: unknown template variable {product.title} — did you mean "
            "{product.key} or {product.name}?",
        ),
    ),
    Broken(
        "unknown-template-variable-in-field",
        "lifecycle.yaml",
        '        - set_field: {name: codigo_discord, value: "{token}"}  # field first',
        '        - set_field: {name: codigo_discord, value: "{code}"}  # field first',
        (f"rules/lifecycle.yaml:<<{{code}}>>: unknown template variable {{code}} {TEMPLATE_HINT}",),
    ),
    Broken(
        "duplicate-key",
        "onboarding.yaml",
        "  code_valid_for: 7d\n",
        "  code_valid_for: 7d\n  code_valid_for: 3d\n",
        (
            "rules/onboarding.yaml:<<code_valid_for: 3d>>: duplicate key 'code_valid_for' (also at line 4): keep "
            "one; YAML would use only this one",
        ),
    ),
    Broken(
        "duplicate-key-in-the-lifecycle",
        "lifecycle.yaml",
        "  initial: new\n",
        "  initial: new    # first\n  initial: new    # again\n",
        (
            "rules/lifecycle.yaml:<<# again>>: duplicate key 'initial' (also at line <<# first>>): keep one; YAML "
            "would use only this one",
        ),
    ),
    Broken(
        "schema-wrong-type",
        "products/curso.yaml",
        "  sources:                # the product's ids on each platform that sells it\n    hotmart: [1111111]\n",
        '  hotmart_product_ids: "abc"\n',
        (
            "rules/products/curso.yaml:<<hotmart_product_ids>>: hotmart_product_ids 'abc': write a list, e.g. "
            "hotmart_product_ids: [1111111]",
        ),
    ),
    Broken(
        # the message names the wrong parameter, not "... is not of type 'string'"
        "schema-bad-step-parameter",
        "lifecycle.yaml",
        "        - schedule: {event: GRACE_EXPIRED, after: 7d}\n",
        "        - schedule: {event: GRACE_EXPIRED, after: 7w}\n",
        ("rules/lifecycle.yaml:<<after: 7w>>: schedule after '7w': write a number and a unit, e.g. 24h, 7d, 30m",),
    ),
    Broken(
        # reported at the extra key itself
        "schema-unknown-product-key",
        "products/curso.yaml",
        "  kind: one_time\n",
        "  kind: one_time\n  price: 97\n",
        (
            "rules/products/curso.yaml:<<price: 97>>: unknown key 'price' (keys here: key, name, kind, "
            "hotmart_product_ids, sources, offer_codes, access, flows)",
        ),
    ),
    Broken(
        "schedule-undeclared-event",
        "lifecycle.yaml",
        "        - schedule: {event: ONBOARDING_REMINDER, after: 24h}\n",
        "        - schedule: {event: ONBOARDING_REMINDR, after: 24h}\n",
        (
            "rules/lifecycle.yaml:<<ONBOARDING_REMINDR>>: schedule: event 'ONBOARDING_REMINDR' is not declared "
            "under lifecycle.events — did you mean 'ONBOARDING_REMINDER'?",
        ),
    ),
    Broken(
        "cancel-undeclared-timer",
        "lifecycle.yaml",
        "        - cancel_timers: [GRACE_EXPIRED]\n",
        "        - cancel_timers: [GRACE_EXPIRD]\n",
        (
            "rules/lifecycle.yaml:<<GRACE_EXPIRD>>: cancel_timers: event 'GRACE_EXPIRD' is not declared under "
            "lifecycle.events — did you mean 'GRACE_EXPIRED'?",
        ),
    ),
    Broken(
        "hotmart-event-without-outcome",
        "lifecycle.yaml",
        "    - on: ORDER_FULFILLMENT\n      reason: logistics of physical products\n",
        "",
        (
            "rules/lifecycle.yaml:<<  ignore:>>: payment event ORDER_FULFILLMENT has no transition and is not listed "
            "under ignore: give it a deliberate outcome (a transition, or an ignore entry with a reason)",
        ),
    ),
    Broken(
        "duplicate-transition-name",
        "lifecycle.yaml",
        "    - name: rejoined ",
        "    - name: relinked ",
        ("rules/lifecycle.yaml:<<# roles back>>: transition name 'relinked' already used at line <<# roles move>>",),
    ),
    Broken(
        "internal-event-named-like-hotmart",
        "lifecycle.yaml",
        "    ACCESS_ENDS: Timer, the paid-until date of a cancelled subscription.\n",
        "    ACCESS_ENDS: Timer, the paid-until date of a cancelled subscription.\n    SWITCH_PLAN: mine.\n",
        ("rules/lifecycle.yaml:<<SWITCH_PLAN: mine>>: event SWITCH_PLAN is Hotmart's; declare only internal events",),
    ),
    Broken(
        "renamed-state-still-a-state",
        "lifecycle.yaml",
        "  # Events the engine raises itself",
        "  renamed_states: {late: overdue, active: overdue}\n  # Events the engine raises itself",
        (
            "rules/lifecycle.yaml:<<renamed_states>>: renamed_states: 'active' is still a state; remove it from "
            "states, or drop the rename",
        ),
    ),
    Broken(
        "renamed-state-to-an-unknown-state",
        "lifecycle.yaml",
        "  # Events the engine raises itself",
        "  renamed_states:\n    late: atrasado\n  # Events the engine raises itself",
        (f"rules/lifecycle.yaml:<<late: atrasado>>: unknown state 'atrasado' in renamed_states (states: {STATES})",),
    ),
    Broken(
        "renamed-states-schema",
        "lifecycle.yaml",
        "  # Events the engine raises itself",
        "  renamed_states: [overdue]\n  # Events the engine raises itself",
        ("rules/lifecycle.yaml:<<renamed_states>>: renamed_states a list: write keys with values (a mapping)",),
    ),
    Broken(
        "unknown-initial-state",
        "lifecycle.yaml",
        "  initial: new\n",
        "  initial: start\n",
        (f"rules/lifecycle.yaml:<<initial: start>>: unknown state 'start' in initial (states: {STATES})",),
    ),
    Broken(
        "misspelt-initial-state",
        "lifecycle.yaml",
        "  initial: new\n",
        "  initial: nw\n",
        ("rules/lifecycle.yaml:<<initial: nw>>: unknown state 'nw' in initial — did you mean 'new'?",),
    ),
    Broken(
        "state-name-in-capitals",
        "lifecycle.yaml",
        "  initial: new\n",
        "  initial: New\n",
        (
            "rules/lifecycle.yaml:<<initial: New>>: initial 'New': use lowercase letters, digits and _ , starting "
            "with a letter, e.g. new",
        ),
    ),
]


def assert_exact_problems(tmp_path: Path, case: Broken) -> list[Problem]:
    """Make the case's mistake in a copy of the rules; its problems must be exactly the expected ones."""
    rules_dir = copy_rules(tmp_path)
    edit(rules_dir, case.file, case.old, case.new)
    rules, problems = check_rules(rules_dir)
    assert rules is None
    assert [str(p) for p in problems] == [resolve(e, rules_dir) for e in case.expected]
    return problems


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_broken_rules_report_exact_problems(tmp_path: Path, case: Broken) -> None:
    assert_exact_problems(tmp_path, case)


def test_resolve_finds_the_line_of_a_text(tmp_path: Path) -> None:
    rules_dir = copy_rules(tmp_path)
    (rules_dir / "products" / "curso.yaml").write_text("# c\nproduct:\n  key: x\n", encoding="utf-8")
    assert resolve("rules/products/curso.yaml:<<key: x>>: m", rules_dir) == "rules/products/curso.yaml:3: m"


def test_load_rules_raises_with_every_problem(tmp_path: Path) -> None:
    rules_dir = copy_rules(tmp_path)
    edit(rules_dir, "lifecycle.yaml", "      on: MEMBER_JOINED\n", "      on: MEMBER_JOIND\n")
    edit(rules_dir, "products/curso.yaml", "    manychat_tags: [aluno-curso]\n", "    manychat_tags: [aluno]\n")
    with pytest.raises(RulesError) as raised:
        load_rules(rules_dir)
    # sorted by file, then line
    assert str(raised.value).splitlines() == [
        resolve(
            "rules/lifecycle.yaml:<<MEMBER_JOIND>>: unknown event 'MEMBER_JOIND' — did you mean 'MEMBER_JOINED'?",
            rules_dir,
        ),
        resolve(
            "rules/products/curso.yaml:<<[aluno]>>: tag 'aluno' is not in catalog.manychat.tags — did you mean "
            "'aluno-curso'?",
            rules_dir,
        ),
    ]


def test_second_lifecycle_file(tmp_path: Path) -> None:
    rules_dir = copy_rules(tmp_path)
    shutil.copy(rules_dir / "lifecycle.yaml", rules_dir / "lifecycle2.yaml")
    _, problems = check_rules(rules_dir)
    top = (rules_dir / "lifecycle2.yaml").read_text(encoding="utf-8").splitlines().index("lifecycle:") + 1
    assert [str(p) for p in problems] == [
        f"rules/lifecycle2.yaml:{top}: a second lifecycle file; the first is rules/lifecycle.yaml"
    ]


def test_missing_onboarding_file(tmp_path: Path) -> None:
    rules_dir = copy_rules(tmp_path)
    (rules_dir / "onboarding.yaml").unlink()
    _, problems = check_rules(rules_dir)
    assert [str(p) for p in problems] == ["rules/:1: no onboarding file (a file whose top-level key is 'onboarding:')"]


def test_empty_file_and_unknown_top_level_key(tmp_path: Path) -> None:
    rules_dir = copy_rules(tmp_path)
    (rules_dir / "products" / "empty.yaml").write_text("# nothing yet\n", encoding="utf-8")
    (rules_dir / "settings.yaml").write_text("settings:\n  debug: true\n", encoding="utf-8")
    _, problems = check_rules(rules_dir)
    assert [str(p) for p in problems] == [
        "rules/products/empty.yaml:1: empty file",
        "rules/settings.yaml:1: unknown top-level key 'settings': a rules file holds one of: "
        "lifecycle, product, catalog, onboarding",
    ]


def test_valid_example_loads() -> None:
    rules, problems = check_rules(RULES)
    assert problems == []
    assert rules is not None
    assert sorted(rules.products) == ["combo", "comunidade", "curso"]
    assert rules.initial == "new"


# --- through the CLI ------------------------------------------------------------------------


def test_cli_check_valid_example() -> None:
    result = CliRunner().invoke(main, ["check", "--rules", str(RULES)])
    assert result.exit_code == 0, result.output
    lifecycle = yaml.safe_load((RULES / "lifecycle.yaml").read_text(encoding="utf-8"))["lifecycle"]
    files = len([p for p in RULES.rglob("*.yaml") if p.relative_to(RULES).parts[0] != "tests"])  # tests: not rules
    products = len(list((RULES / "products").glob("*.yaml")))
    states, transitions = len(lifecycle["states"]), len(lifecycle["transitions"])
    assert (files, products, states) == (6, 3, 9)
    assert result.stdout == f"ok: {files} files, {products} products, {states} states, {transitions} transitions\n"
    assert result.stderr == ""


def test_cli_check_uses_rules_dir_env(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["check"], env={"RULES_DIR": str(tmp_path / "nowhere")})
    assert result.exit_code == 1
    assert f"{tmp_path / 'nowhere'}:1: rules directory not found" in result.stderr.splitlines()


def test_cli_check_broken_rules_exit_1_with_file_line_message(tmp_path: Path) -> None:
    rules_dir = copy_rules(tmp_path)
    edit(rules_dir, "lifecycle.yaml", "      do: [add_role]\n", "      do: [add_rol]\n")
    edit(rules_dir, "catalog.yaml", "    fields: [codigo_discord]\n", "    fields: [codigo]\n")
    result = CliRunner().invoke(main, ["check", "--rules", str(rules_dir)])
    assert result.exit_code == 1
    assert result.stdout == ""
    # the lifecycle fails the schema, so its set_field steps are never checked against the catalog
    assert result.stderr.splitlines() == [
        resolve("rules/lifecycle.yaml:<<[add_rol]>>: unknown action 'add_rol' — did you mean 'add_role'?", rules_dir),
        f"1 error(s) in {rules_dir}",
    ]


def test_cli_check_reports_semantic_errors_of_several_files(tmp_path: Path) -> None:
    rules_dir = copy_rules(tmp_path)
    edit(rules_dir, "catalog.yaml", "    fields: [codigo_discord]\n", "    fields: [codigo]\n")
    edit(rules_dir, "products/combo.yaml", "[3333333]", "[2222222]")
    result = CliRunner().invoke(main, ["check", "--rules", str(rules_dir)])
    assert result.exit_code == 1
    set_field_lines = lines_with(rules_dir, "lifecycle.yaml", "set_field: {name: codigo_discord")
    assert len(set_field_lines) == 4  # first purchase, new purchase, code expired, code requested
    assert result.stderr.splitlines() == [
        *(
            f"rules/lifecycle.yaml:{line}: custom field 'codigo_discord' is not in catalog.manychat.fields — did you "
            "mean 'codigo'?"
            for line in set_field_lines
        ),
        resolve(
            "rules/products/comunidade.yaml:<<hotmart: [2222222]>>: Hotmart product 2222222 is already claimed by "
            "product 'combo' (rules/products/combo.yaml)",
            rules_dir,
        ),
        f"5 error(s) in {rules_dir}",
    ]


def test_cli_check_missing_rules_dir(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-rules"
    result = CliRunner().invoke(main, ["check", "--rules", str(missing)])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [f"{missing}:1: rules directory not found", f"1 error(s) in {missing}"]
