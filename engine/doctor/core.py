"""``engine doctor``'s shape and our own side: a :class:`Check` is one line (``ok`` / ``warn`` /
``FAIL``) saying what is wrong and what to do; here the checks of the engine itself (database,
migrations, connection budget, queue, secrets, rules, running workers, stuck students).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Connection

from engine.rules.model import Rules
from engine.settings import Settings
from engine.sources import DEFAULT_SOURCE, SOURCES, source_enabled

OK, WARN, FAIL = "ok", "warn", "FAIL"

# Values the Makefile and .env.example use for local runs: never valid in production.
DEVELOPMENT_SECRETS = frozenset({"dev-hottok", "dev-admin-token", "change-me", "changeme"})
MIN_SECRET_LENGTH = 16
DATABASE_TIMEOUT = 3  # seconds the preflight waits for the database to answer a connection


@dataclass(frozen=True)
class Check:
    area: str  # discord | manychat | classes | hotmart | engine
    status: str  # ok | warn | FAIL
    message: str

    def line(self) -> str:
        return f"{self.status:<5} {self.area:<9} {self.message}"


def failed(checks: Iterable[Check]) -> bool:
    return any(check.status == FAIL for check in checks)


def as_dicts(checks: Iterable[Check]) -> list[dict[str, str]]:
    return [asdict(check) for check in checks]


# --- our side -----------------------------------------------------------------------------


def secret_checks(settings: Settings) -> list[Check]:
    """Secrets set, and not the development ones outside development."""
    checks = []
    # The default source's secret is always required; another source's once it is turned on.
    named = [
        (source.secret_setting.upper(), getattr(settings, source.secret_setting))
        for source in SOURCES.values()
        if source is DEFAULT_SOURCE or source_enabled(settings, source.name)
    ]
    named.append(("ADMIN_API_TOKEN", settings.admin_api_token))
    if settings.course_api_token.get_secret_value():  # unset, the read API is closed: nothing to check
        named.append(("COURSE_API_TOKEN", settings.course_api_token))
    for name, secret in named:
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

    from engine.pipeline.worker_heartbeat import worker_versions

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
