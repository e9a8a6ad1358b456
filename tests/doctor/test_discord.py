"""`engine doctor --discord` against the fake Discord on loopback."""

from __future__ import annotations

import pytest

from tests.doctor.conftest import COMMUNITY_ROLE, World, doctor, lines
from tests.fakes import discord_app


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


def test_a_service_that_does_not_answer_is_one_line(world: World, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DISCORD_API_BASE", "http://127.0.0.1:1/api/v10")
    result = doctor("--discord")
    assert result.exit_code == 1
    assert lines(result, "FAIL") == [
        "FAIL  discord   Discord did not answer (ConnectError calling /users/@me): check DISCORD_API_BASE and try again"
    ]
