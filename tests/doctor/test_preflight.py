"""The whole preflight: every check passing, `--json`, and GET /admin/doctor."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from engine.api.app import create_app
from tests.conftest import ADMIN_TOKEN, RULES
from tests.doctor.conftest import TOKEN, World, doctor, lines
from tests.fakes import discord_app


def test_a_good_setup_passes(world: World):
    result = doctor("--discord", "--manychat")
    assert result.exit_code == 0, result.stdout
    assert lines(result, "FAIL") == []
    assert lines(result, "warn") == []
    out = result.stdout
    assert "ok    engine    migrations at head" in out
    assert "ok    engine    queue reachable (Redis)" in out
    assert "ok    discord   token valid (bot EngineBot)" in out
    assert "ok    discord   Server Members intent on" in out
    assert "ok    discord   the bot can Manage Roles" in out
    assert "ok    discord   2 role(s) of the rules exist and sit below the bot's role 'EngineBot'" in out
    assert "ok    discord   the bot can post in the alert channel #alertas-engine" in out
    assert "ok    manychat  token valid (page Curso Exemplo)" in out
    from engine.rules import load_rules

    rules = load_rules(RULES)
    assert f"ok    manychat  {len(rules.manychat_tags)} tag(s) of the rules exist" in out
    assert f"ok    manychat  {sum(len(p.flows) for p in rules.products.values())} flow(s) of the rules exist" in out


def test_json_output(world: World):
    world.discord.application_flags = 0
    result = doctor("--discord", "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert {"area": "discord", "status": "ok", "message": "token valid (bot EngineBot)"} in report["checks"]
    assert [c["message"] for c in report["checks"] if c["status"] == "FAIL"] == [
        "Server Members intent is off: turn it on (Developer Portal → Bot → Server Members Intent); "
        "rejoining students and reconcile need it"
    ]


def test_admin_doctor_route(world: World, make_harness):
    h = make_harness(
        discord_bot_token=TOKEN,
        discord_guild_id=discord_app.GUILD_ID,
        discord_alert_channel_id=discord_app.ALERT_CHANNEL_ID,
        discord_api_base=world.env["DISCORD_API_BASE"],
        manychat_api_token=TOKEN,
        manychat_api_base=world.env["MANYCHAT_API_BASE"],
    )
    client = TestClient(create_app(h.runtime))
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    assert client.get("/admin/doctor").status_code == 401
    good = client.get("/admin/doctor", params={"discord": "true", "manychat": "true"}, headers=auth)
    assert good.status_code == 200, good.text
    assert good.json()["ok"] is True
    assert any(c["area"] == "manychat" for c in good.json()["checks"])

    del world.manychat.flows["content20261101000000_000011"]
    bad = client.get("/admin/doctor", params={"manychat": "true"}, headers=auth).json()
    assert bad["ok"] is False
    assert [c["message"] for c in bad["checks"] if c["status"] == "FAIL"] == [
        "flow 'onboarding' of product comunidade (content20261101000000_000011) does not exist in ManyChat: "
        "create it or fix rules/products/comunidade.yaml"
    ]
    assert TOKEN not in json.dumps(bad)


def test_story_32_preflight_names_the_role_above_the_bot_and_the_missing_flow_then_passes(world: World):
    world.discord.add_role(discord_app.COURSE_ROLE_ID, "Aluno Curso", position=3, above_bot=True)
    onboarding_ns = "content20261101000000_000001"
    del world.manychat.flows[onboarding_ns]

    result = doctor("--discord", "--manychat")

    assert result.exit_code == 1
    assert lines(result, "FAIL") == [
        "FAIL  discord   role 'Aluno Curso' (1180000000000000001) (product combo, curso) sits above the bot's "
        "highest role 'EngineBot': drag the bot's role above it (Server Settings → Roles)",
        f"FAIL  manychat  flow 'onboarding' of product curso ({onboarding_ns}) does not exist in ManyChat: "
        "create it or fix rules/products/curso.yaml",
    ]

    # The admin drags the bot's role up and creates the flow.
    world.discord.add_role(discord_app.COURSE_ROLE_ID, "Aluno Curso", position=3)
    world.manychat.seed_flows({onboarding_ns: "Onboarding"})
    fixed = doctor("--discord", "--manychat")
    assert fixed.exit_code == 0, fixed.stdout
    assert lines(fixed, "FAIL") == []
