"""`engine test`: admins' rule tests, run with the planner only."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.authoring.rule_tests import coverage_warnings, run_rule_tests
from engine.cli import main
from engine.rules import load_rules
from tests.conftest import RULES


@pytest.fixture
def rules_copy(tmp_path: Path) -> Path:
    target = tmp_path / "rules"
    shutil.copytree(RULES, target)
    return target


def write_case(rules_dir: Path, text: str, name: str = "case.yaml") -> Path:
    path = rules_dir / "tests" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def only_case(rules_dir: Path, text: str) -> Path:
    """Replace the shipped cases with one file."""
    shutil.rmtree(rules_dir / "tests")
    return write_case(rules_dir, text)


def run(rules_dir: Path, *args: str):
    return CliRunner().invoke(main, ["test", "--rules", str(rules_dir), *args])


def test_shipped_cases_pass_and_cover_every_transition_and_ignore_entry():
    rules = load_rules(RULES)
    report = run_rule_tests(rules, RULES)
    assert report.failures == []
    assert report.cases >= 25
    assert report.coverage.uncovered(rules) == ([], [])
    assert coverage_warnings(rules, RULES) == []  # how long they take: bench/rules_cli.py


def test_cli_ok_summary():
    result = run(RULES)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("ok: ")
    assert "cases in 4 files" in result.stdout


def test_story_36_a_changed_refund_transition_fails_with_file_and_line(rules_copy: Path):
    lifecycle = rules_copy / "lifecycle.yaml"
    text = lifecycle.read_text()
    head, tail = text.split("    - name: refunded\n", 1)
    tail = tail.replace("        - remove_role\n", "", 1)  # the admin's mistake: refund keeps the role
    lifecycle.write_text(head + "    - name: refunded\n" + tail)

    result = run(rules_copy)

    assert result.exit_code == 1
    case_file = (rules_copy / "tests" / "refunds.yaml").read_text().splitlines()
    steps_line = next(
        i for i, line in enumerate(case_file, 1) if line.strip() == "steps:" and i > _line_of(case_file, "R_course")
    )
    assert result.stderr.splitlines() == [
        f"rules/tests/refunds.yaml:{steps_line}: case 'refund from active removes R_course', event 1 "
        '(PURCHASE_REFUNDED): expected step remove_role ["1180000000000000001"] (in this order), '
        "got [cancel_timers, revoke_token, remove_tag, unenroll, trigger_flow]"
    ]
    assert "FAILED: " in result.stdout
    # The README shows this very message.
    assert result.stderr.splitlines()[0] in (RULES.parent / "README.md").read_text()


def _line_of(lines: list[str], needle: str) -> int:
    return next(i for i, line in enumerate(lines, 1) if needle in line)


CASE = """\
tests:
  - name: refund
    product: curso
    state: {state}
    linked: true
    events:
      - event: PURCHASE_REFUNDED
        expect:
{expect}
"""


@pytest.mark.parametrize(
    ("state", "expect", "message"),
    [
        (
            "active",
            "          state: churned",
            "rules/tests/case.yaml:9: case 'refund', event 1 (PURCHASE_REFUNDED): "
            "expected state 'churned', got 'refunded'",
        ),
        (
            "active",
            "          transition: chargeback",
            "rules/tests/case.yaml:9: case 'refund', event 1 (PURCHASE_REFUNDED): "
            "expected transition 'chargeback', got transition 'refunded'",
        ),
        (
            "active",
            "          ignored: true",
            "rules/tests/case.yaml:9: case 'refund', event 1 (PURCHASE_REFUNDED): "
            "expected ignored, got transition 'refunded'",
        ),
        (
            "new",
            "          transition: refunded",
            "rules/tests/case.yaml:9: case 'refund', event 1 (PURCHASE_REFUNDED): "
            "expected transition 'refunded', got ignored (no transition for PURCHASE_REFUNDED from 'new' "
            "(product curso))",
        ),
        (
            "new",
            "          ignored: warranty",
            "rules/tests/case.yaml:9: case 'refund', event 1 (PURCHASE_REFUNDED): "
            "expected the reason to match 'warranty', got \"no transition for PURCHASE_REFUNDED from 'new' "
            '(product curso)"',
        ),
        (
            "active",
            "          steps: [remove_role, trigger_flow]\n          exact_steps: true",
            "rules/tests/case.yaml:9: case 'refund', event 1 (PURCHASE_REFUNDED): expected exactly 2 steps, "
            "got 6: [cancel_timers, revoke_token, remove_role, remove_tag, unenroll, trigger_flow]",
        ),
        (
            "active",
            "          steps: [trigger_flow: welcome]",
            "rules/tests/case.yaml:9: case 'refund', event 1 (PURCHASE_REFUNDED): expected step trigger_flow "
            '"welcome" (in this order), got [cancel_timers, revoke_token, remove_role, remove_tag, unenroll, '
            "trigger_flow]",
        ),
        (
            "active",
            "          no_steps: [unenroll]",
            "rules/tests/case.yaml:9: case 'refund', event 1 (PURCHASE_REFUNDED): expected no unenroll step, "
            "got [cancel_timers, revoke_token, remove_role, remove_tag, unenroll, trigger_flow]",
        ),
    ],
    ids=["state", "transition", "ignored", "not-ignored", "reason", "exact", "missing-step", "no-steps"],
)
def test_each_expectation_reports_what_it_got(rules_copy: Path, state: str, expect: str, message: str):
    only_case(rules_copy, CASE.format(state=state, expect=expect))
    result = run(rules_copy)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [message]


def test_steps_are_a_subset_in_order_and_parameters_compare(rules_copy: Path):
    only_case(
        rules_copy,
        CASE.format(
            state="active",
            expect="          steps:\n"
            '            - remove_role: {role_ids: ["1180000000000000001"]}\n'
            "            - unenroll: curso-2026\n"
            "            - trigger_flow: refund",
        ),
    )
    assert run(rules_copy).exit_code == 0
    # Out of order: trigger_flow comes after remove_role in the rules.
    only_case(
        rules_copy,
        CASE.format(state="active", expect="          steps: [trigger_flow: refund, remove_role]"),
    )
    assert run(rules_copy).exit_code == 1


def test_events_run_in_sequence_from_the_state_the_previous_one_left(rules_copy: Path):
    only_case(
        rules_copy,
        """\
tests:
  - name: purchase, link, refund
    product: curso
    events:
      - {event: PURCHASE_APPROVED, expect: {state: pending_onboarding}}
      - {event: DISCORD_LINKED, expect: {transition: linked, state: active}}
      - {event: PURCHASE_APPROVED, expect: {transition: renewal_or_repurchase, state: active}}
      - {event: PURCHASE_REFUNDED, expect: {state: refunded}}
""",
    )
    result = run(rules_copy)
    assert result.exit_code == 0, result.stderr
    assert "ok: 1 cases in 1 files" in result.stdout


def test_a_payload_file_is_parsed_like_a_webhook(rules_copy: Path):
    payload = {
        "id": "x",
        "event": "PURCHASE_APPROVED",
        "version": "2.0.0",
        "creation_date": 1772452800000,
        "data": {
            "product": {"id": 2222222, "name": "Comunidade"},
            "buyer": {"email": "ana.exemplo@example.com", "name": "Ana"},
            "purchase": {"transaction": "HP1", "status": "APPROVED", "recurrence_number": 3},
        },
    }
    (rules_copy / "tests" / "renewal.json").write_text(json.dumps(payload))
    only_case(
        rules_copy,
        """\
tests:
  - name: a renewal from a payload file
    state: active
    linked: true
    events:
      - payload: renewal.json
        expect: {transition: renewal_or_repurchase, state: active}
""",
    )
    (rules_copy / "tests" / "renewal.json").write_text(json.dumps(payload))
    result = run(rules_copy)
    assert result.exit_code == 0, result.stderr


def test_a_case_file_that_breaks_its_schema_is_located(rules_copy: Path):
    only_case(
        rules_copy,
        """\
tests:
  - name: no expectation
    product: curso
    events:
      - event: PURCHASE_APPROVED
""",
    )
    result = run(rules_copy)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == ["rules/tests/case.yaml:5: tests.0.events.0: 'expect' is a required property"]


def test_unknown_product_and_state_in_a_case(rules_copy: Path):
    only_case(
        rules_copy,
        """\
tests:
  - name: typo in product
    product: cursso
    events: [{event: PURCHASE_APPROVED, expect: {state: active}}]
  - name: typo in state
    product: curso
    state: activ
    events: [{event: PURCHASE_APPROVED, expect: {state: active}}]
""",
    )
    result = run(rules_copy)
    assert result.stderr.splitlines() == [
        "rules/tests/case.yaml:3: case 'typo in product': product 'cursso' is not in the rules",
        "rules/tests/case.yaml:7: case 'typo in state': state 'activ' is not in the rules",
    ]


def test_rule_tests_are_not_rules(rules_copy: Path):
    write_case(rules_copy, "tests: []\nnot: a rules file\n", "odd.yaml")
    rules = load_rules(rules_copy)  # would fail if the tests folder were read as rules
    assert "rules/tests/odd.yaml" not in rules.files


def test_check_warns_about_uncovered_transitions_and_strict_fails(rules_copy: Path):
    (rules_copy / "tests" / "refunds.yaml").unlink()
    runner = CliRunner()

    result = runner.invoke(main, ["check", "--rules", str(rules_copy)])
    assert result.exit_code == 0
    lifecycle = (rules_copy / "lifecycle.yaml").read_text().splitlines()
    chargeback_line = _line_of(lifecycle, "- name: chargeback")
    expected = (
        f"warning: rules/lifecycle.yaml:{chargeback_line}: transition 'chargeback' is not covered by any rule test"
    )
    assert expected in result.stderr.splitlines()
    assert "warning(s)" in result.stdout

    strict = runner.invoke(main, ["check", "--rules", str(rules_copy), "--strict"])
    assert strict.exit_code == 1


def test_check_without_any_rule_test_says_so(rules_copy: Path):
    shutil.rmtree(rules_copy / "tests")
    result = CliRunner().invoke(main, ["check", "--rules", str(rules_copy)])
    assert result.exit_code == 0
    assert result.stderr.strip().startswith("warning: no rule tests in ")
