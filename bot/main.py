"""The Discord bot process: ``/registrar`` and member joins (run with ``engine bot``).

The handlers are thin: they hand the work to :class:`engine.onboarding.linking.LinkService` in a thread (the
database must not block the gateway's event loop) and answer with the text it returns.
The bot never grants a role itself: it stores events, and the worker's Discord connector
does the REST calls.

``on_member_join`` needs the privileged *Server Members Intent*: enable it in the
Developer Portal (Bot → Privileged Gateway Intents), or the gateway closes with 4014.

Importing this module connects nowhere; only :func:`run` does.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time

import discord

from engine.onboarding.linking import LinkService, normalize_code
from engine.worker.heartbeat_file import beat

log = logging.getLogger(__name__)

COMMAND_NAME = "registrar"
COMMAND_DESCRIPTION = "Vincule sua conta do Discord ao curso"
CODE_DESCRIPTION = "Código de 8 caracteres recebido no WhatsApp"
HEARTBEAT_SECONDS = 30  # `engine heartbeat bot` (the compose healthcheck) allows 90


def build_bot(service: LinkService, guild_id: int) -> discord.Bot:
    """A bot with the guild-only ``/registrar`` command and the member-join listener.

    The command and the listener are also reachable as ``bot.registrar`` and
    ``bot.member_join_listener`` (tests call ``bot.registrar.callback(ctx, codigo=...)``).
    """
    guild_id = int(guild_id)
    intents = discord.Intents.default()
    intents.members = True  # on_member_join (privileged: "Server Members Intent")
    bot = discord.Bot(intents=intents)

    # The decorator form of the option: annotations are strings under `from __future__ import annotations`.
    @bot.slash_command(name=COMMAND_NAME, description=COMMAND_DESCRIPTION, guild_ids=[guild_id])
    @discord.option("codigo", str, description=CODE_DESCRIPTION, required=True, min_length=8, max_length=8)
    async def registrar(ctx: discord.ApplicationContext, codigo: str) -> None:
        await ctx.defer(ephemeral=True)  # the database may take longer than Discord's 3 s
        try:
            outcome = await asyncio.to_thread(service.link, ctx.author.id, normalize_code(codigo))
            reply = outcome.reply
        except Exception:  # noqa: BLE001 - the student always gets an answer
            log.exception("/registrar failed for Discord user %s", ctx.author.id)
            reply = service.reply("unavailable")
        await ctx.respond(reply, ephemeral=True)

    async def on_member_join(member: discord.Member) -> None:
        if member.bot or member.guild.id != guild_id:
            return
        event_id = await asyncio.to_thread(service.member_joined, member.id)
        if event_id is not None:
            log.info("Discord user %s (re)joined: event %s", member.id, event_id)

    bot.add_listener(on_member_join, "on_member_join")

    @bot.listen("on_ready", once=True)
    async def on_ready() -> None:
        log.info("bot connected as %s; /%s in guild %s", bot.user, COMMAND_NAME, guild_id)

    bot.registrar = registrar
    bot.member_join_listener = on_member_join
    return bot


def run() -> None:
    """Build everything from the environment and run the bot until stopped."""
    from engine.db.session import session_factory
    from engine.logs import configure_logging
    from engine.pipeline.rules_repository import RulesRepository
    from engine.settings import get_settings
    from engine.worker import task_queue

    settings = get_settings()
    configure_logging(settings.logs_as)
    token = settings.discord_bot_token.get_secret_value()
    if not (settings.discord_enabled and token and settings.discord_guild_id):
        # During the rollout Discord is off: idle instead of exiting, or the container's
        # restart policy would restart the bot in a loop.
        logging.getLogger(__name__).warning(
            "Discord is disabled or not configured (DISCORD_ENABLED, DISCORD_BOT_TOKEN, DISCORD_GUILD_ID); "
            "the bot idles until it is restarted with them set"
        )
        while True:  # idling on purpose is healthy
            beat(settings.var_dir, "bot")
            time.sleep(HEARTBEAT_SECONDS)
    # A student who links is waiting for the role: their events go ahead of bulk work.
    enqueue = functools.partial(task_queue().enqueue, urgent=True)
    service = LinkService(session_factory(settings), RulesRepository(settings.rules_dir), enqueue)
    bot = build_bot(service, int(settings.discord_guild_id))
    threading.Thread(target=_heartbeat, args=(bot, settings.var_dir), name="heartbeat", daemon=True).start()
    bot.run(token)  # blocking; handles SIGINT/SIGTERM


def _heartbeat(bot, var_dir) -> None:
    """Beat while connected to Discord: a bot stuck reconnecting turns unhealthy."""
    while True:
        if bot.is_ready() and not bot.is_closed():
            beat(var_dir, "bot")
        time.sleep(HEARTBEAT_SECONDS)
