"""`engine doctor` and GET /admin/doctor against the fake Discord and ManyChat on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from engine.api.app import create_app
from engine.cli import main
from engine.rules.files import rules_version
from engine.settings import get_settings
from tests.conftest import ADMIN_TOKEN, RULES, shipped_rules
from tests.fakes import discord_app, manychat_app
from tests.fakes.server import serve

TOKEN = "doctor-test-token"
COMMUNITY_ROLE = "1180000000000000002"
STRONG_HOTTOK = "a-long-production-hottok-0123456789"
STRONG_ADMIN = "a-long-production-admin-token-0123456789"


@dataclass
class World:
    discord: discord_app.FakeDiscord
    manychat: manychat_app.FakeManyChat
    env: dict[str, str]


def _seed_good(discord: discord_app.FakeDiscord, manychat: manychat_app.FakeManyChat) -> None:
    discord.add_role(COMMUNITY_ROLE, "Comunidade", position=2)
    rules = shipped_rules()
    manychat.seed_tags(*sorted(rules.manychat_tags))
    manychat.seed_fields(*sorted(rules.manychat_fields))
    manychat.seed_flows({ns: name for product in rules.products.values() for name, ns in product.flows.items()})


@pytest.fixture
def world(pg: str, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    discord = discord_app.create_app(token=TOKEN)
    manychat = manychat_app.create_app(token=TOKEN)
    _seed_good(discord.state.fake, manychat.state.fake)
    with serve(discord) as discord_url, serve(manychat) as manychat_url:
        env = {
            "ENGINE_ENV": "production",
            "DATABASE_URL": pg,
            "REDIS_URL": redis_url,
            "RULES_DIR": str(RULES),
            "HOTMART_HOTTOK": STRONG_HOTTOK,
            "ADMIN_API_TOKEN": STRONG_ADMIN,
            "DISCORD_ENABLED": "false",
            "DISCORD_BOT_TOKEN": TOKEN,
            "DISCORD_GUILD_ID": discord_app.GUILD_ID,
            "DISCORD_ALERT_CHANNEL_ID": discord_app.ALERT_CHANNEL_ID,
            "DISCORD_API_BASE": f"{discord_url}/api/v10",
            "MANYCHAT_ENABLED": "false",
            "MANYCHAT_API_TOKEN": TOKEN,
            "MANYCHAT_API_BASE": manychat_url,
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        worker_beats(pg, rules_version(RULES))  # a worker runs, on the rules on disk
        yield World(discord.state.fake, manychat.state.fake, env)
    get_settings.cache_clear()


def worker_beats(pg: str, version: str | None, name: str = "worker:doctor-test") -> None:
    from datetime import UTC, datetime

    from engine.db.session import session_factory
    from engine.pipeline.heartbeat import beat
    from engine.settings import Settings

    now = datetime.now(UTC)
    with session_factory(Settings(ENGINE_ENV="test", database_url=pg)).begin() as session:
        beat(session, name, started_at=now, now=now, rules_version=version)


def doctor(*args: str):
    get_settings.cache_clear()
    return CliRunner().invoke(main, ["doctor", *args])


def lines(result, status: str) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.startswith(status)]


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


def test_flags_off_checks_only_our_side_and_says_so(world: World):
    result = doctor()
    assert result.exit_code == 0, result.stdout
    assert not [line for line in result.stdout.splitlines() if " discord " in line or " manychat " in line]
    assert "(not checked: Discord, ManyChat" in result.stdout


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


def test_a_bad_discord_token_is_named(world: World, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DISCORD_BOT_TOKEN", "not-the-token")
    result = doctor("--discord")
    assert result.exit_code == 1
    assert lines(result, "FAIL") == [
        "FAIL  discord   DISCORD_BOT_TOKEN is not valid: copy the token again (Developer Portal → Bot)"
    ]
    assert "not-the-token" not in result.stdout


def test_discord_setup_problems_are_each_named(world: World):
    world.discord.application_flags = 0
    world.discord.roles[discord_app.BOT_ROLE_ID]["permissions"] = str(1 << 10)  # view only
    world.discord.add_role(COMMUNITY_ROLE, "Comunidade", position=2, managed=True)
    world.discord.channel_overwrites[discord_app.ALERT_CHANNEL_ID] = [
        {"id": discord_app.GUILD_ID, "type": 0, "allow": "0", "deny": str(1 << 11)}
    ]
    result = doctor("--discord")
    assert result.exit_code == 1
    assert lines(result, "FAIL") == [
        "FAIL  discord   Server Members intent is off: turn it on (Developer Portal → Bot → Server Members Intent); "
        "rejoining students and reconcile need it",
        "FAIL  discord   the bot cannot Manage Roles: give its role the Manage Roles permission",
        "FAIL  discord   role 'Comunidade' (1180000000000000002) (product combo, comunidade) is managed by an "
        "integration: no bot can grant it; use another role",
        "FAIL  discord   the bot cannot post in #alertas-engine: allow View Channel and Send Messages for its role "
        "in that channel",
    ]


def test_a_channel_overwrite_for_the_bots_role_allows_posting(world: World):
    world.discord.roles[discord_app.BOT_ROLE_ID]["permissions"] = str(1 << 28)  # no channel rights by default
    world.discord.channel_overwrites[discord_app.ALERT_CHANNEL_ID] = [
        {"id": discord_app.BOT_ROLE_ID, "type": 0, "allow": str((1 << 10) | (1 << 11)), "deny": "0"}
    ]
    result = doctor("--discord")
    assert result.exit_code == 0, result.stdout


def test_the_bot_outside_the_guild_and_a_missing_role(world: World):
    world.discord.roles.pop(COMMUNITY_ROLE)
    result = doctor("--discord")
    assert "FAIL  discord   role 1180000000000000002 (product combo, comunidade) does not exist in the guild: " in (
        result.stdout
    )
    world.discord.bot_in_guild = False
    result = doctor("--discord")
    assert lines(result, "FAIL") == [
        f"FAIL  discord   the bot is not in guild {discord_app.GUILD_ID}: invite it with the bot and "
        "applications.commands scopes and permissions 268438528"
    ]


def test_manychat_setup_problems_are_each_named(world: World, monkeypatch: pytest.MonkeyPatch):
    world.manychat.tags.pop("assinante")
    world.manychat.fields["codigo_discord"]["type"] = "number"
    result = doctor("--manychat")
    assert result.exit_code == 1
    assert lines(result, "FAIL") == [
        "FAIL  manychat  tag 'assinante' does not exist in ManyChat: create it (Settings → Tags) or fix the rules",
        "FAIL  manychat  custom field 'codigo_discord' is number, the rules write text: recreate it as text",
    ]
    monkeypatch.setenv("MANYCHAT_API_TOKEN", "wrong")
    bad = doctor("--manychat")
    assert lines(bad, "FAIL") == ["FAIL  manychat  MANYCHAT_API_TOKEN is not valid: copy it again (Settings → API)"]


def test_a_service_that_does_not_answer_is_one_line(world: World, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DISCORD_API_BASE", "http://127.0.0.1:1/api/v10")
    result = doctor("--discord")
    assert result.exit_code == 1
    assert lines(result, "FAIL") == [
        "FAIL  discord   Discord did not answer (ConnectError calling /users/@me): check DISCORD_API_BASE and try again"
    ]


def test_our_side_development_secrets_and_pending_migrations(world: World, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HOTMART_HOTTOK", "dev-hottok")
    monkeypatch.setenv("ADMIN_API_TOKEN", "short")
    monkeypatch.setenv("DATABASE_URL", "sqlite://")  # an empty in-memory database: no migration applied
    result = doctor()
    assert result.exit_code == 1
    assert "FAIL  engine    HOTMART_HOTTOK is a development value: generate a new one" in result.stdout
    assert "warn  engine    ADMIN_API_TOKEN is short (5 characters): use 16 or more" in result.stdout
    assert "FAIL  engine    migrations at none, newest is " in result.stdout


def test_a_database_that_accepts_connections_and_never_answers_fails_the_preflight(
    world: World, monkeypatch: pytest.MonkeyPatch
):
    """The database checks share one connection opened with a short timeout: a server that takes
    the TCP connection and never speaks is one FAIL line, not a preflight that waits forever."""
    import socket
    import threading

    silent = socket.create_server(("127.0.0.1", 0))  # listens (the kernel accepts) and never answers
    monkeypatch.setenv("DATABASE_URL", f"postgresql://doctor@127.0.0.1:{silent.getsockname()[1]}/silent")
    outcome = []
    run = threading.Thread(target=lambda: outcome.append(doctor()), daemon=True)
    try:
        run.start()
        run.join(timeout=60)  # the connect timeout is 3 s; without it libpq waits for ever
    finally:
        silent.close()
    assert outcome, "engine doctor did not finish"
    result = outcome[0]
    assert result.exit_code == 1
    assert lines(result, "FAIL") == ["FAIL  engine    database unreachable (OperationalError): check DATABASE_URL"]
    assert "queue reachable (Redis)" in result.stdout  # the other checks still ran


def test_invalid_rules_and_an_unreachable_queue(world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    (tmp_path / "lifecycle.yaml").write_text("lifecycle: {}\n")
    monkeypatch.setenv("RULES_DIR", str(tmp_path))
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    result = doctor()
    assert result.exit_code == 1
    fails = lines(result, "FAIL")
    assert fails[0] == "FAIL  engine    queue unreachable (ConnectionError): check REDIS_URL"
    assert fails[1].startswith(f"FAIL  engine    rules in {tmp_path} are invalid (")
    assert fails[1].endswith(": run engine check")


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


def test_a_worker_on_other_rules_and_no_worker_at_all_are_warned(world: World, pg: str):
    ok = doctor()
    assert f"ok    engine    1 worker(s) run the rules on disk ({rules_version(RULES)})" in ok.stdout.splitlines()

    worker_beats(pg, "0123456789ab@oldcommit", name="worker:doctor-test")
    behind = doctor()
    assert behind.exit_code == 0  # a warning: the worker reloads by itself
    assert lines(behind, "warn") == [
        f"warn  engine    1 of 1 worker(s) run other rules than {rules_version(RULES)} "
        "(e.g. worker:doctor-test: 0123456789ab@oldcommit): they reload within RULES_RELOAD_SECONDS; "
        "if it persists, see /healthz for the load error"
    ]


def test_no_fresh_worker_heartbeat_is_warned(world: World, pg: str):
    from sqlalchemy import text

    from engine.db.session import session_factory
    from engine.settings import Settings

    with session_factory(Settings(ENGINE_ENV="test", database_url=pg)).begin() as session:
        session.execute(text("DELETE FROM heartbeats"))
    result = doctor()
    assert "warn  engine    no running worker (no fresh heartbeat): start `engine worker`" in result.stdout
