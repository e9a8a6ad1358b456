"""What the doctor's tests share: a fake Discord and ManyChat on loopback set up right, the
environment pointing at them, and `engine doctor` run through click."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from click.testing import CliRunner

from engine.cli import main
from engine.rules.files import rules_version
from engine.settings import get_settings
from tests.conftest import RULES, shipped_rules
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
    from engine.pipeline.worker_heartbeat import beat
    from engine.settings import Settings

    now = datetime.now(UTC)
    with session_factory(Settings(ENGINE_ENV="test", database_url=pg)).begin() as session:
        beat(session, name, started_at=now, now=now, rules_version=version)


def doctor(*args: str):
    get_settings.cache_clear()
    return CliRunner().invoke(main, ["doctor", *args])


def lines(result, status: str) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.startswith(status)]
