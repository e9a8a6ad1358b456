"""``engine doctor``: preflight checks before a flag is turned on (and ``GET /admin/doctor``).

Each check is one line, ``ok`` / ``warn`` / ``FAIL``, saying what is wrong and what to do.
Only read calls are made to Discord and ManyChat (shared/reference discord.md 2.4/2.4a,
manychat.md 2.5-2.7); nothing is granted, tagged or sent.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import httpx
from sqlalchemy import Connection

from engine.rules.model import Rules
from engine.settings import Settings

OK, WARN, FAIL = "ok", "warn", "FAIL"

# Discord permission bits (discord.md section 4) and application flags (2.4a).
ADMINISTRATOR = 1 << 3
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_ROLES = 1 << 28
GATEWAY_GUILD_MEMBERS = 1 << 14
GATEWAY_GUILD_MEMBERS_LIMITED = 1 << 15

# Values the Makefile and .env.example use for local runs: never valid in production.
DEVELOPMENT_SECRETS = frozenset({"dev-hottok", "dev-admin-token", "change-me", "changeme"})
MIN_SECRET_LENGTH = 16
DATABASE_TIMEOUT = 3  # seconds the preflight waits for the database to answer a connection


@dataclass(frozen=True)
class Check:
    area: str  # discord | manychat | engine
    status: str  # ok | warn | FAIL
    message: str

    def line(self) -> str:
        return f"{self.status:<5} {self.area:<9} {self.message}"


def run_doctor(
    settings: Settings,
    rules: Rules | None,
    *,
    discord: bool | None = None,
    manychat: bool | None = None,
    engine_checks: Iterable[Check] = (),
    transport: httpx.BaseTransport | None = None,
) -> list[Check]:
    """Every check; ``discord``/``manychat`` None means "when the flag is on"."""
    checks = list(engine_checks)
    if discord if discord is not None else settings.discord_enabled:
        checks += _DiscordDoctor(settings, rules, transport).run()
    if manychat if manychat is not None else settings.manychat_enabled:
        checks += _ManyChatDoctor(settings, rules, transport).run()
    return checks


def failed(checks: Iterable[Check]) -> bool:
    return any(check.status == FAIL for check in checks)


def as_dicts(checks: Iterable[Check]) -> list[dict[str, str]]:
    return [asdict(check) for check in checks]


# --- our side -----------------------------------------------------------------------------


def secret_checks(settings: Settings) -> list[Check]:
    """Secrets set, and not the development ones outside development."""
    checks = []
    for name, secret in (("HOTMART_HOTTOK", settings.hotmart_hottok), ("ADMIN_API_TOKEN", settings.admin_api_token)):
        value = secret.get_secret_value()
        if not value:
            status = WARN if settings.development else FAIL
            checks.append(Check("engine", status, f"{name} is not set: set it in the environment (.env)"))
        elif settings.development:
            checks.append(Check("engine", OK, f"{name} set (development: any value is accepted)"))
        elif value.lower() in DEVELOPMENT_SECRETS:
            checks.append(Check("engine", FAIL, f"{name} is a development value: generate a new one"))
        elif len(value) < MIN_SECRET_LENGTH:
            checks.append(
                Check("engine", WARN, f"{name} is short ({len(value)} characters): use {MIN_SECRET_LENGTH} or more")
            )
        else:
            checks.append(Check("engine", OK, f"{name} set"))
    return checks


def rules_check(rules: Rules | None, problems: list[Any], rules_dir: str) -> Check:
    if problems or rules is None:
        first = f": {problems[0]}" if problems else ""
        return Check(
            "engine", FAIL, f"rules in {rules_dir} are invalid ({len(problems)} error(s)){first}: run engine check"
        )
    counts = f"{len(rules.products)} products, {len(rules.states)} states, {len(rules.transitions)} transitions"
    return Check("engine", OK, f"rules valid: {counts}")


@contextmanager
def database_connection(settings: Settings) -> Iterator[Connection]:
    """The one connection every database check uses: opened with a short timeout (a database that
    accepts connections and never answers must not hang the preflight), in autocommit (a failed
    query, such as a table not migrated yet, does not spoil the next). Raises if unreachable."""
    from sqlalchemy import create_engine, pool

    from engine.db.session import connect_timeout_args

    url = settings.sqlalchemy_url
    engine = create_engine(url, poolclass=pool.NullPool, connect_args=connect_timeout_args(url, DATABASE_TIMEOUT))
    try:
        with engine.connect() as connection:
            yield connection.execution_options(isolation_level="AUTOCOMMIT")
    finally:
        engine.dispose()


def database_checks(connection: Connection) -> list[Check]:
    """The database answers and its schema is at the newest migration."""
    from engine.db.migrate import code_heads, revisions_of

    current, heads = revisions_of(connection), code_heads()
    head = ", ".join(sorted(heads))
    if current != heads:
        at = ", ".join(sorted(current)) or "none"
        return [
            Check("engine", OK, "database reachable"),
            Check("engine", FAIL, f"migrations at {at}, newest is {head}: run engine migrate"),
        ]
    return [Check("engine", OK, "database reachable"), Check("engine", OK, f"migrations at head ({head})")]


def connection_budget_check(settings: Settings, connection: Connection) -> Check | None:
    """How many worker processes (at their default size) fit in PostgreSQL's max_connections."""
    from engine.db.session import _OVERFLOW, room_of, worker_pool_size

    if connection.dialect.name != "postgresql":
        return None
    limit, reserved, used = room_of(connection)
    per_worker = (settings.database_pool_size or worker_pool_size(4 + settings.manychat_lane_threads)) + _OVERFLOW
    fits = (limit - reserved - used) // per_worker
    text = (
        f"connections: max_connections={limit}, {used} in use; an `engine worker` (4 threads + "
        f"{settings.manychat_lane_threads} ManyChat) opens up to {per_worker}: room for {fits} more"
    )
    if fits < 1:
        return Check("engine", WARN, f"{text}: lower --threads or DATABASE_POOL_SIZE, or raise max_connections")
    return Check("engine", OK, text)


def worker_rules_check(settings: Settings, rules_version: str | None, connection: Connection) -> Check | None:
    """Do the running workers run the rules on disk? (their heartbeats report the version they loaded)"""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy.orm import Session

    from engine.pipeline.heartbeat import worker_versions

    if rules_version is None:
        return None  # invalid rules on disk: rules_check says so
    fresh_since = datetime.now(UTC) - timedelta(seconds=settings.worker_stale_seconds)
    try:
        with Session(bind=connection) as session:
            workers = worker_versions(session, fresh_since=fresh_since)
    except Exception:  # noqa: BLE001 - no heartbeats table before the migrations: database_checks says so
        return None
    if not workers:
        return Check("engine", WARN, "no running worker (no fresh heartbeat): start `engine worker`")
    behind = sorted(name for name, version in workers.items() if version != rules_version)
    if behind:
        return Check(
            "engine",
            WARN,
            f"{len(behind)} of {len(workers)} worker(s) run other rules than {rules_version} "
            f"(e.g. {behind[0]}: {workers[behind[0]] or 'none loaded'}): they reload within "
            "RULES_RELOAD_SECONDS; if it persists, see /healthz for the load error",
        )
    return Check("engine", OK, f"{len(workers)} worker(s) run the rules on disk ({rules_version})")


def stuck_check(settings: Settings, connection: Connection) -> Check:
    """Students stuck behind an event or a lock (engine.pipeline.watchdog)."""
    from sqlalchemy.orm import Session

    from engine.db.models import utcnow
    from engine.db.stuck import find_stuck

    stuck = find_stuck(Session(bind=connection), settings, utcnow())
    if stuck:
        return Check("engine", WARN, f"stuck: {stuck.describe(settings)}: see `engine status` and the alerts")
    return Check("engine", OK, "no student stuck (no old open event, no idle student lock)")


def queue_check(settings: Settings) -> Check:
    if not settings.redis_url:
        return Check("engine", OK, "queue: embedded SQLite (no REDIS_URL)")
    import redis

    try:
        redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=2).ping()
    except redis.RedisError as exc:
        return Check("engine", FAIL, f"queue unreachable ({type(exc).__name__}): check REDIS_URL")
    return Check("engine", OK, "queue reachable (Redis)")


# --- remote services ----------------------------------------------------------------------


class _Unreachable(Exception):
    """A call that cannot answer the question (transport error, 5xx): reported, checks stop."""


class _Client:
    """Read-only calls with one wait on a 429 (a preflight makes a handful of requests)."""

    def __init__(self, base_url: str, headers: dict[str, str], transport: httpx.BaseTransport | None):
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=10, transport=transport)

    def get(self, path: str, **params: Any) -> httpx.Response:
        for _ in range(2):
            try:
                response = self._http.get(path, params=params or None)
            except httpx.HTTPError as exc:
                raise _Unreachable(f"{type(exc).__name__} calling {path}") from exc
            if response.status_code != 429:
                break
            time.sleep(min(float(response.headers.get("Retry-After", "1") or 1), 5.0))
        if response.status_code >= 500 or response.status_code == 429:
            raise _Unreachable(f"HTTP {response.status_code} from {path}")
        return response

    def close(self) -> None:
        self._http.close()


class _ServiceDoctor:
    """The checks of one outside service, run through one client; a service that does not answer is one FAIL."""

    area, title = "", ""  # the Check's area; the service's name in a message
    base_setting = ""  # the setting naming the service's address

    def __init__(self, client: _Client):
        self.client = client
        self.checks: list[Check] = []

    def run(self) -> list[Check]:
        try:
            self._run()
        except _Unreachable as exc:
            self._add(FAIL, f"{self.title} did not answer ({exc}): check {self.base_setting} and try again")
        except _Refused as exc:  # raised by ManyChat's reads
            self._add(FAIL, f"{self.title} refused a read of {exc.path} (HTTP {exc.status}): check the token's page")
        finally:
            self.client.close()
        return self.checks

    def _add(self, status: str, message: str) -> None:
        self.checks.append(Check(self.area, status, message))

    def _run(self) -> None:
        raise NotImplementedError


class _DiscordDoctor(_ServiceDoctor):
    area, title, base_setting = "discord", "Discord", "DISCORD_API_BASE"

    def __init__(self, settings: Settings, rules: Rules | None, transport: httpx.BaseTransport | None):
        super().__init__(
            _Client(
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


class _ManyChatDoctor(_ServiceDoctor):
    area, title, base_setting = "manychat", "ManyChat", "MANYCHAT_API_BASE"

    def __init__(self, settings: Settings, rules: Rules | None, transport: httpx.BaseTransport | None):
        token = settings.manychat_api_token.get_secret_value()
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        super().__init__(_Client(settings.manychat_api_base.rstrip("/"), headers, transport))
        self.rules = rules

    def _data(self, path: str) -> Any:
        response = self.client.get(path)
        body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
        if response.status_code != 200 or body.get("status") != "success":
            raise _Refused(path, response.status_code)
        return body.get("data")

    def _run(self) -> None:
        try:
            page = self._data("/fb/page/getInfo")
        except _Refused:
            self._add(FAIL, "MANYCHAT_API_TOKEN is not valid: copy it again (Settings → API)")
            return
        self._add(OK, f"token valid (page {page.get('name', '?') if isinstance(page, dict) else '?'})")
        if self.rules is None:
            return
        tags = {t.get("name") for t in self._data("/fb/page/getTags") or []}
        missing = sorted(set(self.rules.manychat_tags) - tags)
        for tag in missing:
            self._add(FAIL, f"tag '{tag}' does not exist in ManyChat: create it (Settings → Tags) or fix the rules")
        if not missing:
            self._add(OK, f"{len(self.rules.manychat_tags)} tag(s) of the rules exist")
        self._fields({f.get("name"): f.get("type") for f in self._data("/fb/page/getCustomFields") or []})
        flows_data = self._data("/fb/page/getFlows") or {}
        namespaces = {f.get("ns") for f in (flows_data.get("flows") if isinstance(flows_data, dict) else []) or []}
        missing_flows = 0
        for product in sorted(self.rules.products.values(), key=lambda p: p.key):
            for name, ns in sorted(product.flows.items()):
                if ns not in namespaces:
                    missing_flows += 1
                    self._add(
                        FAIL,
                        f"flow '{name}' of product {product.key} ({ns}) does not exist in ManyChat: "
                        f"create it or fix {product.file}",
                    )
        if not missing_flows:
            count = sum(len(p.flows) for p in self.rules.products.values())
            self._add(OK, f"{count} flow(s) of the rules exist")

    def _fields(self, existing: dict[str, str]) -> None:
        wanted = _rule_fields(self.rules)
        bad = 0
        for name, kind in sorted(wanted.items()):
            if name not in existing:
                bad += 1
                self._add(FAIL, f"custom field '{name}' does not exist in ManyChat: create it as {kind}")
            elif kind and existing[name] != kind:
                bad += 1
                self._add(
                    FAIL, f"custom field '{name}' is {existing[name]}, the rules write {kind}: recreate it as {kind}"
                )
        if not bad:
            self._add(OK, f"{len(wanted)} custom field(s) of the rules exist with the right type")


class _Refused(Exception):
    def __init__(self, path: str, status: int):
        super().__init__(path, status)
        self.path, self.status = path, status


# --- what the rules name ------------------------------------------------------------------


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
            if step.action in ("add_role", "remove_role") and isinstance(step.args, dict):
                for role in step.args.get("roles") or []:
                    wanted.setdefault(str(role), set()).add(f"transition {transition.name}")
    return wanted


def _rule_fields(rules: Rules | None) -> dict[str, str]:
    """Custom field -> the ManyChat type its set_field values need."""
    if rules is None:
        return {}
    fields = {name: "" for name in rules.manychat_fields}
    for transition in rules.transitions:
        for step in transition.steps:
            if step.action == "set_field" and isinstance(step.args, dict):
                fields[step.args["name"]] = _manychat_type(step.args.get("value"))
    return fields


def _manychat_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "text"


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


def preflight(
    settings: Settings,
    rules: Rules | None,
    rule_problems: list[Any],
    *,
    discord: bool | None = None,
    manychat: bool | None = None,
    transport: httpx.BaseTransport | None = None,
) -> list[Check]:
    """Our side (database, migrations, queue, secrets, rules), then each service asked for."""
    from engine.rules.files import rules_version

    on_disk = rules_version(settings.rules_dir) if rules is not None and not rule_problems else None
    try:
        with database_connection(settings) as connection:
            database = database_checks(connection)
            budget = connection_budget_check(settings, connection)
            workers = worker_rules_check(settings, on_disk, connection)
            migrated = all(check.status == OK for check in database)
            stuck = stuck_check(settings, connection) if migrated else None
    except Exception as exc:  # noqa: BLE001 - any driver error: say it in one line
        database = [Check("engine", FAIL, f"database unreachable ({type(exc).__name__}): check DATABASE_URL")]
        budget = workers = stuck = None
    ours = [
        *database,
        *([budget] if budget else []),
        queue_check(settings),
        *secret_checks(settings),
        rules_check(rules, rule_problems, str(settings.rules_dir)),
        *([workers] if workers else []),
        *([stuck] if stuck else []),
    ]
    return run_doctor(settings, rules, discord=discord, manychat=manychat, engine_checks=ours, transport=transport)
