"""The py-cord side: command schema and handlers, called without a Discord connection."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from unittest.mock import AsyncMock, MagicMock

import pytest

from bot.main import build_bot
from engine.onboarding.linking import LinkOutcome, LinkService

GUILD_ID = 1180000000000000999
USER_ID = 80351110224678912


class FakeService:
    """Records calls and the thread they ran on (the handlers must not block the loop)."""

    def __init__(self, outcome: LinkOutcome | Exception | None = None):
        self.outcome = outcome or LinkOutcome("linked", "Pronto!", 7)
        self.link_calls: list[tuple[int, str]] = []
        self.joined: list[int] = []
        self.threads: list[int] = []
        self.joined_event = threading.Event()

    def link(self, discord_user_id, code):
        self.threads.append(threading.get_ident())
        self.link_calls.append((discord_user_id, code))
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome

    def member_joined(self, discord_user_id):
        self.threads.append(threading.get_ident())
        self.joined.append(discord_user_id)
        self.joined_event.set()
        return 42

    def reply(self, outcome: str) -> str:
        return f"reply:{outcome}"


def make_ctx(user_id: int = USER_ID) -> MagicMock:
    ctx = MagicMock()
    ctx.author.id = user_id
    ctx.defer = AsyncMock()
    ctx.respond = AsyncMock()
    return ctx


def make_member(user_id: int = USER_ID, *, guild_id: int = GUILD_ID, bot: bool = False) -> MagicMock:
    member = MagicMock()
    member.id = user_id
    member.bot = bot
    member.guild.id = guild_id
    return member


@pytest.fixture
def main_thread_loop() -> Iterator[None]:
    """The event loop a fresh `engine bot` process has when it builds the bot (py-cord asks for
    it), whatever asyncio tests ran before in this process."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield
    asyncio.set_event_loop(None)
    loop.close()


def test_command_schema(main_thread_loop):
    bot = build_bot(FakeService(), GUILD_ID)
    registrar = bot.registrar

    payload = registrar.to_dict()
    [option] = payload["options"]
    assert payload["name"] == "registrar" and payload["description"]
    assert option["name"] == "codigo" and option["type"] == 3
    assert option["required"] is True
    assert option["min_length"] == 8 and option["max_length"] == 8
    assert option["description"] and option["description"] != "No description provided"
    assert registrar.guild_ids == [GUILD_ID]
    assert registrar in bot.pending_application_commands


def test_intents_include_members_for_joins(main_thread_loop):
    bot = build_bot(FakeService(), GUILD_ID)
    assert bot.intents.members is True
    assert bot.intents.message_content is False and bot.intents.presences is False


async def test_registrar_defers_then_answers_with_the_service_reply():
    service = FakeService(LinkOutcome("used_code", "Esse código já foi usado."))
    bot = build_bot(service, GUILD_ID)
    ctx = make_ctx()

    await bot.registrar.callback(ctx, codigo="  abcd2345 ")

    ctx.defer.assert_awaited_once_with(ephemeral=True)
    assert service.link_calls == [(USER_ID, "ABCD2345")]
    assert service.threads and service.threads[0] != threading.get_ident()  # off the event loop
    ctx.respond.assert_awaited_once_with("Esse código já foi usado.", ephemeral=True)


async def test_registrar_answers_unavailable_if_the_service_breaks():
    service = FakeService(RuntimeError("boom"))
    bot = build_bot(service, GUILD_ID)
    ctx = make_ctx()

    await bot.registrar.callback(ctx, codigo="ABCD2345")

    ctx.defer.assert_awaited_once_with(ephemeral=True)
    ctx.respond.assert_awaited_once_with("reply:unavailable", ephemeral=True)


async def test_registrar_with_the_real_service(make_harness):
    """End to end through the handler: the reply is the rules' text, the link is stored."""
    from tests.onboarding.test_linking import open_code, seed, student

    h = make_harness()
    seed(h)
    code = open_code(h)
    service = LinkService(h.runtime.sessions, h.runtime.rules, h.queued.append, clock=h.clock)
    bot = build_bot(service, GUILD_ID)
    ctx = make_ctx()

    await bot.registrar.callback(ctx, codigo=code.lower())

    ctx.respond.assert_awaited_once_with(h.runtime.rules.rules.onboarding.replies["linked"], ephemeral=True)
    assert student(h).discord_id == str(USER_ID)
    assert len(h.queued) == 1


async def _wait_for(flag: threading.Event) -> bool:
    for _ in range(200):
        if flag.is_set():
            return True
        await asyncio.sleep(0.01)
    return False


async def test_member_join_is_dispatched_to_the_service():
    service = FakeService()
    bot = build_bot(service, GUILD_ID)

    bot.dispatch("member_join", make_member())

    assert await _wait_for(service.joined_event)
    assert service.joined == [USER_ID]
    assert service.threads[0] != threading.get_ident()


async def test_member_join_ignores_bots_and_other_guilds():
    service = FakeService()
    bot = build_bot(service, GUILD_ID)

    await bot.member_join_listener(make_member(bot=True))
    await bot.member_join_listener(make_member(guild_id=GUILD_ID + 1))
    assert service.joined == []

    await bot.member_join_listener(make_member(USER_ID + 1))
    assert service.joined == [USER_ID + 1]
