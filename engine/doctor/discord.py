"""The Discord checks of ``engine doctor``: the bot's token, its Server Members intent, its place in
the guild, Manage Roles, the rules' roles below the bot's, and the alert channel (read calls only,
shared/reference discord.md 2.4/2.4a)."""

from __future__ import annotations

import httpx

from engine.doctor.core import FAIL, OK, WARN
from engine.doctor.remote import ReadOnlyClient, ServiceDoctor
from engine.rules.actions import ACTIONS
from engine.rules.model import Rules
from engine.settings import Settings

# Discord permission bits (discord.md section 4) and application flags (2.4a).
ADMINISTRATOR = 1 << 3
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_ROLES = 1 << 28
GATEWAY_GUILD_MEMBERS = 1 << 14
GATEWAY_GUILD_MEMBERS_LIMITED = 1 << 15


class DiscordDoctor(ServiceDoctor):
    area, title, base_setting = "discord", "Discord", "DISCORD_API_BASE"

    def __init__(self, settings: Settings, rules: Rules | None, transport: httpx.BaseTransport | None):
        super().__init__(
            ReadOnlyClient(
                settings.discord_api_base.rstrip("/"),
                {"Authorization": f"Bot {settings.discord_bot_token.get_secret_value()}"},
                transport,
            )
        )
        self.settings, self.rules = settings, rules
        self.guild = settings.discord_guild_id

    def _run(self) -> None:
        if not self.settings.discord_bot_token.get_secret_value() or not self.guild:
            self._add(FAIL, "DISCORD_BOT_TOKEN and DISCORD_GUILD_ID must be set")
            return
        me = self.client.get("/users/@me")
        if me.status_code == 401:
            self._add(FAIL, "DISCORD_BOT_TOKEN is not valid: copy the token again (Developer Portal → Bot)")
            return
        bot = me.json()
        self._add(OK, f"token valid (bot {bot.get('username')})")
        self._intent()
        member = self.client.get(f"/guilds/{self.guild}/members/{bot['id']}")
        if member.status_code != 200:
            self._add(
                FAIL,
                f"the bot is not in guild {self.guild}: invite it with the bot and applications.commands "
                "scopes and permissions 268438528",
            )
            return
        self._add(OK, f"the bot is in guild {self.guild}")
        roles_response = self.client.get(f"/guilds/{self.guild}/roles")
        roles = {role["id"]: role for role in roles_response.json()}
        bot_roles = [roles[r] for r in member.json().get("roles", []) if r in roles]
        everyone = roles.get(self.guild, {})
        permissions = _permissions([everyone, *bot_roles])
        top = max(bot_roles, key=lambda role: role["position"], default=everyone)
        self._manage_roles(permissions)
        self._role_hierarchy(roles, top)
        self._alert_channel(bot["id"], [everyone, *bot_roles], permissions)

    def _intent(self) -> None:
        app = self.client.get("/applications/@me")
        if app.status_code != 200:
            self._add(WARN, f"cannot read the application's flags (HTTP {app.status_code})")
            return
        if int(app.json().get("flags") or 0) & (GATEWAY_GUILD_MEMBERS | GATEWAY_GUILD_MEMBERS_LIMITED):
            self._add(OK, "Server Members intent on")
        else:
            self._add(
                FAIL,
                "Server Members intent is off: turn it on (Developer Portal → Bot → Server Members Intent); "
                "rejoining students and reconcile need it",
            )

    def _manage_roles(self, permissions: int) -> None:
        if permissions & (MANAGE_ROLES | ADMINISTRATOR):
            self._add(OK, "the bot can Manage Roles")
        else:
            self._add(FAIL, "the bot cannot Manage Roles: give its role the Manage Roles permission")

    def _role_hierarchy(self, roles: dict[str, dict], top: dict) -> None:
        wanted = _rule_roles(self.rules)
        problems = 0
        for role_id, products in sorted(wanted.items()):
            where = f"(product {', '.join(sorted(products))})"
            role = roles.get(role_id)
            if role is None:
                problems += 1
                self._add(FAIL, f"role {role_id} {where} does not exist in the guild: fix the id in the rules")
            elif role.get("managed"):
                problems += 1
                self._add(
                    FAIL,
                    f"role '{role['name']}' ({role_id}) {where} is managed by an integration: "
                    "no bot can grant it; use another role",
                )
            elif role["position"] >= top.get("position", 0):
                problems += 1
                self._add(
                    FAIL,
                    f"role '{role['name']}' ({role_id}) {where} sits above the bot's highest role "
                    f"'{top.get('name')}': drag the bot's role above it (Server Settings → Roles)",
                )
        if not problems:
            self._add(OK, f"{len(wanted)} role(s) of the rules exist and sit below the bot's role '{top.get('name')}'")

    def _alert_channel(self, bot_id: str, bot_roles: list[dict], base: int) -> None:
        channel_id = self.settings.discord_alert_channel_id
        if not channel_id:
            self._add(WARN, "DISCORD_ALERT_CHANNEL_ID is not set: alerts stay in the admin API only")
            return
        response = self.client.get(f"/channels/{channel_id}")
        if response.status_code != 200:
            self._add(
                FAIL, f"alert channel {channel_id} not found or not visible to the bot: check DISCORD_ALERT_CHANNEL_ID"
            )
            return
        channel = response.json()
        allowed = _channel_permissions(base, channel, self.guild, bot_id, {r["id"] for r in bot_roles})
        needed = VIEW_CHANNEL | SEND_MESSAGES
        if allowed & needed == needed:
            self._add(OK, f"the bot can post in the alert channel #{channel.get('name', channel_id)}")
        else:
            self._add(
                FAIL,
                f"the bot cannot post in #{channel.get('name', channel_id)}: allow View Channel and Send Messages "
                "for its role in that channel",
            )


def _rule_roles(rules: Rules | None) -> dict[str, set[str]]:
    """Role id -> products that grant or name it."""
    if rules is None:
        return {}
    wanted: dict[str, set[str]] = {}
    for product in rules.products.values():
        for role in product.discord_roles:
            wanted.setdefault(role, set()).add(product.key)
    for transition in rules.transitions:
        for step in transition.steps:
            if _acts_on_roles(step.action) and isinstance(step.args, dict):
                for role in step.args.get("roles") or []:
                    wanted.setdefault(str(role), set()).add(f"transition {transition.name}")
    return wanted


def _acts_on_roles(action: str) -> bool:
    declared = ACTIONS.get(action)
    return declared is not None and declared.ledger is not None and declared.ledger.kind == "discord_role"


def _permissions(roles: list[dict]) -> int:
    total = 0
    for role in roles:
        total |= int(role.get("permissions") or 0)
    return total


def _channel_permissions(base: int, channel: dict, guild_id: str, member_id: str, role_ids: set[str]) -> int:
    """Discord's overwrite order: @everyone, then the member's roles together, then the member."""
    if base & ADMINISTRATOR:
        return ~0
    overwrites = {o["id"]: o for o in channel.get("permission_overwrites") or []}
    allowed = base
    everyone = overwrites.get(guild_id)
    if everyone:
        allowed = (allowed & ~int(everyone["deny"])) | int(everyone["allow"])
    deny = allow = 0
    for role_id in role_ids - {guild_id}:
        overwrite = overwrites.get(role_id)
        if overwrite:
            deny |= int(overwrite["deny"])
            allow |= int(overwrite["allow"])
    allowed = (allowed & ~deny) | allow
    member = overwrites.get(member_id)
    if member:
        allowed = (allowed & ~int(member["deny"])) | int(member["allow"])
    return allowed
