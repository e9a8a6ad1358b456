"""The admin's mistakes and the exact words `engine check` answers with (issue 14).

Each case copies the shipped ``rules/``, makes one typical mistake, and expects exactly one
``file:line: message`` at the line of the mistake (see test_rules_check for the helpers).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from engine.rules.messages import closest, did_you_mean
from engine.rules.schema_messages import _PATTERN_HINTS
from tests.engine.test_rules_check import ROOT, Broken, assert_exact_problems

MESSAGE_CASES = [
    Broken(
        "duration-in-words",
        "lifecycle.yaml",
        "        - schedule: {event: ONBOARDING_REMINDER, after: 24h}\n",
        "        - schedule: {event: ONBOARDING_REMINDER, after: 24 hours}\n",
        (
            "rules/lifecycle.yaml:<<after: 24 hours>>: schedule after '24 hours': write a number and a unit, "
            "e.g. 24h, 7d, 30m",
        ),
    ),
    Broken(
        "duration-in-onboarding",
        "onboarding.yaml",
        "  code_valid_for: 7d\n",
        "  code_valid_for: 7 days\n",
        (
            "rules/onboarding.yaml:<<code_valid_for>>: code_valid_for '7 days': write a number and a unit, "
            "e.g. 24h, 7d, 30m",
        ),
    ),
    Broken(
        "discord-role-unquoted",
        "products/curso.yaml",
        '    discord_roles: ["1180000000000000001"]\n',
        "    discord_roles: [1180000000000000004]\n",
        (
            "rules/products/curso.yaml:<<discord_roles>>: Discord role 1180000000000000004: put the id in quotes, "
            '"1180000000000000004" (YAML turns a long unquoted number into an integer)',
        ),
    ),
    Broken(
        "discord-role-unquoted-in-a-step",
        "lifecycle.yaml",
        "      do: [add_role]\n",
        "      do: [add_role: {roles: [1180000000000000004]}]\n",
        (
            "rules/lifecycle.yaml:<<1180000000000000004>>: Discord role 1180000000000000004: put the id in quotes, "
            '"1180000000000000004" (YAML turns a long unquoted number into an integer)',
        ),
    ),
    Broken(
        "discord-role-not-an-id",
        "products/curso.yaml",
        '    discord_roles: ["1180000000000000001"]\n',
        '    discord_roles: ["alunos"]\n',
        (
            "rules/products/curso.yaml:<<discord_roles>>: Discord role 'alunos': a Discord id is 15 to 21 digits, "
            'in quotes, e.g. "1180000000000000001" (Discord: right-click the role > Copy Role ID)',
        ),
    ),
    Broken(
        # ONE error, at the typo's own line: not also "'from' is a required property"
        "key-typo-form",
        "lifecycle.yaml",
        "      from: [new, refunded, churned]\n",
        "      form: [new, refunded, churned]\n",
        ("rules/lifecycle.yaml:<<form:>>: unknown key 'form' — did you mean 'from'?",),
    ),
    Broken(
        "missing-key",
        "lifecycle.yaml",
        "      from: [new, refunded, churned]\n",
        "",
        (
            "rules/lifecycle.yaml:<<name: waiting_for_payment>>: transition 'waiting_for_payment': missing key "
            "'from' (the states it applies in, e.g. from: active, or from: '*')",
        ),
    ),
    Broken(
        "key-typo-in-a-step",
        "lifecycle.yaml",
        "      do: [{trigger_flow: billet_reminder}]\n",
        "      do: [{trigger_flow: {flow: billet_reminder, optinal: true}}]\n",
        ("rules/lifecycle.yaml:<<optinal>>: unknown key 'optinal' — did you mean 'optional'?",),
    ),
    Broken(
        "flow-without-a-value",
        "products/curso.yaml",
        "    billet_reminder: content20261101000000_000005\n",
        "    billet_reminder:\n",
        (
            "rules/products/curso.yaml:<<billet_reminder:>>: flow billet_reminder has no value: paste its ManyChat "
            "flow namespace, or write none (no such flow)",
        ),
    ),
    Broken(
        "key-without-a-value",
        "products/curso.yaml",
        "  name: Workshop Exemplo de Automação\n",
        "  name:\n",
        ("rules/products/curso.yaml:<<  name:>>: name has no value: write text",),
    ),
    Broken(
        "top-level-typo",
        "products/curso.yaml",
        "product:\n",
        "prodcut:\n",
        ("rules/products/curso.yaml:<<prodcut:>>: unknown top-level key 'prodcut' — did you mean 'product'?",),
    ),
    Broken(
        "condition-key-typo",
        "lifecycle.yaml",
        "    is_renewal: {field: recurrence_number, gt: 1}\n",
        "    is_renewal: {feild: recurrence_number, gt: 1}\n",
        ("rules/lifecycle.yaml:<<feild>>: unknown key 'feild' — did you mean 'field'?",),
    ),
    Broken(
        "number-in-quotes",
        "lifecycle.yaml",
        "    is_renewal: {field: recurrence_number, gt: 1}\n",
        "    is_renewal: {field: recurrence_number, gt: '1'}\n",
        ("rules/lifecycle.yaml:<<gt: '1'>>: gt '1': write a number without quotes, e.g. gt: 1",),
    ),
    Broken(
        "to-state-typo",
        "lifecycle.yaml",
        "      to: active\n      if: discord_linked\n",
        "      to: activ\n      if: discord_linked\n",
        ("rules/lifecycle.yaml:<<to: activ\n>>: unknown state 'activ' in to — did you mean 'active'?",),
    ),
    Broken(
        "from-state-typo",
        "lifecycle.yaml",
        "      from: pending_payment\n      to: new\n",
        "      from: pending_paymnet\n      to: new\n",
        (
            "rules/lifecycle.yaml:<<pending_paymnet>>: unknown state 'pending_paymnet' in from — did you mean "
            "'pending_payment'?",
        ),
    ),
    Broken(
        "action-typo",
        "lifecycle.yaml",
        "      do: [add_tag, add_role, enroll, {trigger_flow: welcome}]",
        "      do: [add_tag, add_role, enrol, {trigger_flow: welcome}]",
        ("rules/lifecycle.yaml:<<enrol,>>: unknown action 'enrol' — did you mean 'enroll'?",),
    ),
    Broken(
        "event-typo",
        "lifecycle.yaml",
        "      on: DISCORD_LINKED\n      from: pending_onboarding\n",
        "      on: DISCORD_LINK\n      from: pending_onboarding\n",
        ("rules/lifecycle.yaml:<<on: DISCORD_LINK\n>>: unknown event 'DISCORD_LINK' — did you mean 'DISCORD_LINKED'?",),
    ),
    Broken(
        "event-in-lowercase",
        "lifecycle.yaml",
        "      on: MEMBER_JOINED\n",
        "      on: member_joined\n",
        (
            "rules/lifecycle.yaml:<<member_joined>>: on 'member_joined': event names are written in capitals and "
            "underscores, e.g. MEMBER_JOINED",
        ),
    ),
    Broken(
        "tag-typo",
        "lifecycle.yaml",
        "        - add_tag: ex-assinante\n",
        "        - add_tag: ex-assinant\n",
        (
            "rules/lifecycle.yaml:<<ex-assinant>>: tag 'ex-assinant' is not in catalog.manychat.tags — did you mean "
            "'ex-assinante'?",
        ),
    ),
    Broken(
        "kind-typo",
        "lifecycle.yaml",
        "      kind: subscription\n      from: active\n",
        "      kind: subscripton\n      from: active\n",
        (
            "rules/lifecycle.yaml:<<subscripton>>: kind 'subscripton': write one of one_time, subscription — did "
            "you mean 'subscription'?",
        ),
    ),
    Broken(
        "step-without-its-parameters",
        "lifecycle.yaml",
        "        - schedule: {event: GRACE_EXPIRED, after: 7d}\n",
        "        - schedule\n",
        (
            "rules/lifecycle.yaml:<<- schedule\n>>: schedule needs parameters, e.g. schedule: {event: GRACE_EXPIRED, "
            "after: 7d}",
        ),
    ),
    Broken(
        "two-actions-in-one-step",
        "lifecycle.yaml",
        "      do: [add_role]\n",
        "      do: [{add_role: , enroll: }]\n",
        (
            "rules/lifecycle.yaml:<<enroll: }>>: one action per step: write each of add_role, enroll on its own "
            "line starting with '- '",
        ),
    ),
    Broken(
        "steps-not-a-list",
        "lifecycle.yaml",
        "      do: [add_role]\n",
        "      do: add_role\n",
        ("rules/lifecycle.yaml:<<do: add_role>>: do 'add_role': write a list, e.g. do: [add_role]",),
    ),
    Broken(
        "state-listed-twice",
        "lifecycle.yaml",
        "    - refunded            # refund",
        "    - active\n    - refunded            # refund",
        ("rules/lifecycle.yaml:<<  states:>>: states: 'active' is listed twice",),
    ),
    Broken(
        "hotmart-id-not-digits",
        "products/curso.yaml",
        "[1111111]",
        "[abc]",
        (
            "rules/products/curso.yaml:<<[abc]>>: Hotmart product id 'abc': a Hotmart product id is digits only, "
            "e.g. 1111111",
        ),
    ),
    Broken(
        "bad-indentation",
        "lifecycle.yaml",
        "      on: MEMBER_JOINED\n      from: [active, overdue, cancelled, disputed]\n",
        "      on: MEMBER_JOINED\n     from: [active, overdue, cancelled, disputed]\n",
        (
            "rules/lifecycle.yaml:<<\n     from: [active, overdue, cancelled, disputed]>>: invalid YAML: did not find "
            "expected '-' indicator — check the indentation here and on the line above: spaces only, no tabs; the "
            "keys of one block start in the same column",
        ),
    ),
    Broken(
        "tab",
        "products/curso.yaml",
        "  kind: one_time\n",
        "  kind: one_time\n\tname: x\n",
        (
            "rules/products/curso.yaml:<<\tname: x>>: invalid YAML: found a tab character that violates "
            "indentation — indent with spaces, never tabs",
        ),
    ),
    Broken(
        "missing-flow-reported-at-the-product",
        "products/curso.yaml",
        "    billet_reminder: content20261101000000_000005\n",
        "",
        (
            "rules/products/curso.yaml:<<flows:>>: flows: add 'billet_reminder' (used by transition "
            "waiting_for_payment) or mark it optional",
        ),
    ),
    Broken(
        "flow-used-by-several-transitions",
        "products/curso.yaml",
        "    onboarding: content20261101000000_000001\n",
        "",
        (
            "rules/products/curso.yaml:<<flows:>>: flows: add 'onboarding' (used by transitions "
            "purchase_not_linked, new_purchase_while_onboarding, code_requested, code_expired) or mark it optional",
        ),
    ),
    Broken(
        "flow-misspelt-in-the-product",
        "products/curso.yaml",
        "    billet_reminder: content",
        "    billet_remindr: content",
        (
            "rules/products/curso.yaml:<<billet_remindr>>: flow 'billet_remindr' is not used by any transition — "
            "did you mean 'billet_reminder'?",
        ),
    ),
]


@pytest.mark.parametrize("case", MESSAGE_CASES, ids=[c.id for c in MESSAGE_CASES])
def test_each_mistake_gets_one_plain_message_at_its_line(tmp_path: Path, case: Broken) -> None:
    problems = assert_exact_problems(tmp_path, case)
    for problem in problems:  # plain words: no regex, no 0-based path, no validator jargon
        assert not re.search(r"\^|\$'|\[0-9\]|\.\d+\.|is not of type|Additional properties", problem.message)


def _patterns(node) -> set[str]:
    if isinstance(node, dict):
        found = {node["pattern"]} if isinstance(node.get("pattern"), str) else set()
        return found.union(*(_patterns(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_patterns(v) for v in node))
    return set()


def test_every_schema_pattern_is_explained_in_words() -> None:
    schema = json.loads((ROOT / "config.schema.json").read_text(encoding="utf-8"))
    assert _patterns(schema) <= set(_PATTERN_HINTS)


def test_packaged_schema_is_the_top_level_one() -> None:
    assert (ROOT / "engine" / "config.schema.json").read_bytes() == (ROOT / "config.schema.json").read_bytes()


def test_did_you_mean_is_case_insensitive_and_offers_ties() -> None:
    assert closest("Active", ["new", "active"]) == "active"
    assert closest("zzz", ["new", "active"]) is None
    assert did_you_mean("product.title", ["product.key", "product.name", "token"]) == (
        " — did you mean 'product.key' or 'product.name'?"
    )
    assert did_you_mean("active", ["active"]) == ""
