"""The action registry: one declaration per action, read by the schema, the planner, the pipeline."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime

import pytest

from connectors.classes import ClassesConnector
from connectors.discord import DiscordConnector
from connectors.manychat import ManyChatConnector
from engine.pipeline.local_actions import LOCAL_ACTIONS
from engine.rules import check_rules, load_rules
from engine.rules.action_types import RenderContext
from engine.rules.actions import ACTIONS, CLASSES, DISCORD, IDEMPOTENT, LOCAL, MANYCHAT, run_by
from engine.rules.loader import SCHEMA_PATH
from engine.rules.schema import with_actions
from tests.conftest import RULES, load_payload


def test_config_schema_action_part_is_the_registry():
    """config.schema.json's step and argument shapes are what the registry declares
    (regenerate with `python -m engine.rules.schema`)."""
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    assert with_actions(schema) == schema
    step = schema["$defs"]["step"]["oneOf"]
    assert set(step[1]["properties"]) == set(ACTIONS)
    assert set(step[0]["enum"]) == {name for name, action in ACTIONS.items() if action.bare}


def test_every_action_has_exactly_one_executor():
    assert run_by(LOCAL) == set(LOCAL_ACTIONS)  # a handler per local action, none undeclared
    discord = DiscordConnector("token", "1180000000000000000")
    manychat = ManyChatConnector("token")
    classes = ClassesConnector("https://course.example.com/webhooks", "whsec_c2VjcmV0")
    try:
        assert run_by(DISCORD) == discord.actions
        assert run_by(MANYCHAT) == manychat.actions
        assert run_by(CLASSES) == classes.actions == {"enroll", "unenroll"}
    finally:
        discord.close()
        manychat.close()
        classes.close()
    assert run_by(LOCAL) | run_by(DISCORD) | run_by(MANYCHAT) | run_by(CLASSES) == set(ACTIONS)


def test_only_a_flow_and_a_direct_message_are_never_resent_on_their_own():
    assert set(ACTIONS) - IDEMPOTENT == {"trigger_flow", "send_dm"}


def test_a_bare_step_takes_the_products_resources_into_its_ledger_parameter():
    rules = load_rules(RULES)
    product = rules.products["combo"]
    context = RenderContext(rules, product, {}, datetime(2026, 3, 2, tzinfo=UTC), None, None, str)
    resourced = [name for name, action in ACTIONS.items() if action.product_resource]
    assert sorted(resourced) == ["add_role", "add_tag", "enroll", "remove_role", "remove_tag", "unenroll"]
    for name in resourced:
        action = ACTIONS[name]
        assert action.bare and action.ledger is not None
        params = action.render(None, context)
        assert params[action.ledger.param] == list(getattr(product, action.product_resource)), name


# --- send_dm from the rules ------------------------------------------------------------------

DM = "Olá {student.name}! Seu acesso a {product.name} está liberado."


@pytest.fixture
def rules_with_dm(tmp_path):
    rules_dir = tmp_path / "rules"
    shutil.copytree(RULES, rules_dir)
    lifecycle = rules_dir / "lifecycle.yaml"
    text = lifecycle.read_text()
    anchor = "      do: [add_tag, add_role, enroll, {trigger_flow: welcome}]\n"
    assert anchor in text
    lifecycle.write_text(text.replace(anchor, f'      do: [add_tag, add_role, enroll, {{send_dm: "{DM}"}}]\n', 1))
    return rules_dir


def test_send_dm_is_checked_like_any_step(rules_with_dm):
    rules, problems = check_rules(rules_with_dm)
    assert problems == [] and rules is not None
    lifecycle = rules_with_dm / "lifecycle.yaml"
    lifecycle.write_text(lifecycle.read_text().replace("{student.name}!", "{student.nome}!"))
    _, problems = check_rules(rules_with_dm)
    assert [p.message for p in problems] == ["unknown template variable {student.nome} — did you mean {student.name}?"]


def test_send_dm_from_a_rule_reaches_the_discord_connector(make_harness, rules_with_dm):
    from engine.db.models import Student

    h = make_harness(rules_dir=rules_with_dm)
    with h.runtime.sessions.begin() as session:
        session.add(Student(email="ana.exemplo@example.com", name="Ana Exemplo", discord_id="1190000000000000001"))
    h.deliver(load_payload("purchase_approved.json"))
    sent = [(step, ctx) for step, ctx in h.discord.calls if step.action == "send_dm"]
    assert len(sent) == 1
    step, ctx = sent[0]
    product = h.runtime.rules.rules.products["curso"]
    assert step.params == {"content": f"Olá Ana Exemplo! Seu acesso a {product.name} está liberado."}
    assert ctx.student.discord_id == "1190000000000000001"
