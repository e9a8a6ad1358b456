"""Apply Alembic migrations (``engine migrate``; also at ``engine serve`` start).

Whether the database is already at the code's head is answered without importing Alembic (about
0.4 s of every ``engine serve`` / ``engine worker`` start): the revision ids are read from the
migration files and the ``alembic_version`` table. Alembic itself runs only to migrate.

Revisions 0007 to 0010 had other ids until they were numbered in chain order (:data:`RENUMBERED`):
a database stamped with an old id is stamped with the new one before Alembic reads it.
"""

from __future__ import annotations

import ast
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, create_engine, inspect, pool, text

from engine.settings import Settings, get_settings

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"
log = logging.getLogger(__name__)


class NotMigrated(RuntimeError):
    pass


def alembic_config(settings: Settings | None = None) -> Config:
    from alembic.config import Config

    settings = settings or get_settings()
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser treats % as interpolation; URLs may contain it (encoded passwords).
    config.set_main_option("sqlalchemy.url", settings.sqlalchemy_url.replace("%", "%%"))
    return config


# Old id -> new id. The revisions were numbered as their branches were merged (0006 -> 0014 ->
# 0009 -> 0015 -> 0016), so versions/ did not read in the order they run; the schema each one
# makes is unchanged. "0009" is both an old id (now 0008) and a new one (was 0015): a database at
# the new 0009 has heartbeats.rules_version. The other old ids must never be used again (the next
# revision after 0013 is 0017; tests/engine/test_migrations.py checks it).
RENUMBERED = {"0014": "0007", "0009": "0008", "0015": "0009", "0016": "0010"}


def upgrade(settings: Settings | None = None, revision: str = "head") -> None:
    settings = settings or get_settings()
    if settings.sqlalchemy_url.startswith("sqlite"):
        settings.var_dir.mkdir(parents=True, exist_ok=True)
    if revision == "head" and _at_head(settings):
        return
    _restamp_renumbered(settings)
    from alembic import command

    command.upgrade(alembic_config(settings), revision)


def _restamp_renumbered(settings: Settings) -> None:
    """A database stamped with a renumbered revision's old id gets the new id (committed on its
    own: both name the same schema), so Alembic finds its revision in ``versions/``."""
    from engine.db.session import connect_timeout_args

    url = settings.sqlalchemy_url
    engine = create_engine(url, poolclass=pool.NullPool, connect_args=connect_timeout_args(url))
    try:
        with engine.begin() as connection:
            current = revisions_of(connection)
            old = min(current) if len(current) == 1 else ""
            new = RENUMBERED.get(old)
            if new is None:
                return
            if old == "0009" and "rules_version" in {c["name"] for c in inspect(connection).get_columns("heartbeats")}:
                return  # the new 0009 (heartbeats.rules_version), not the old one
            connection.execute(
                text("UPDATE alembic_version SET version_num = :new WHERE version_num = :old"), {"new": new, "old": old}
            )
            log.info("database revision %s is now called %s (the revisions were renumbered in chain order)", old, new)
    finally:
        engine.dispose()


def code_revisions() -> dict[str, str | tuple[str, ...] | None]:
    """Each revision of ``migrations/versions`` and its ``down_revision`` (None for the first),
    read from the files' literal assignments, as Alembic reads them."""
    revisions: dict[str, str | tuple[str, ...] | None] = {}
    for path in (MIGRATIONS / "versions").glob("*.py"):
        values = {}
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
                        values[target.id] = ast.literal_eval(node.value)
        if "revision" in values:
            revisions[values["revision"]] = values.get("down_revision")
    return revisions


def code_heads() -> set[str]:
    """The newest revisions of ``migrations/versions``: every revision no other one revises."""
    revisions = code_revisions()
    parents: set[str] = set()
    for down in revisions.values():
        parents.update(down if isinstance(down, tuple | list) else [down] if down else [])
    return set(revisions) - parents


def _at_head(settings: Settings) -> bool:
    try:
        current, heads = current_revisions(settings)
    except Exception:  # noqa: BLE001 - unreachable: Alembic then says what is wrong, in its own words
        return False
    return current == heads


def database_revisions(settings: Settings) -> set[str]:
    """The revisions the database is at (none for an empty database). Raises if it is unreachable."""
    from engine.db.session import connect_timeout_args

    url = settings.sqlalchemy_url
    engine = create_engine(url, poolclass=pool.NullPool, connect_args=connect_timeout_args(url))
    try:
        with engine.connect() as connection:
            return revisions_of(connection)
    finally:
        engine.dispose()


def revisions_of(connection: Connection) -> set[str]:
    """The revisions the database behind ``connection`` is at (none for an empty database)."""
    if not inspect(connection).has_table("alembic_version"):
        return set()
    return set(connection.execute(text("SELECT version_num FROM alembic_version")).scalars())


def current_revisions(settings: Settings) -> tuple[set[str], set[str]]:
    """(the database's revisions, the code's heads). Raises if the database is unreachable."""
    return database_revisions(settings), code_heads()


def wait_for_migrations(settings: Settings, *, timeout: float, poll: float = 1.0) -> None:
    """Block until the database is at the code's head (another process runs the migrations):
    a worker started beside a fresh database waits instead of crashing. One log line while
    waiting; :class:`NotMigrated` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    said = None
    while True:
        try:
            current, heads = current_revisions(settings)
            state = f"database at {', '.join(sorted(current)) or 'no revision'}, code at {', '.join(sorted(heads))}"
            if current == heads:
                if said:
                    log.info("database migrated (%s)", state)
                return
        except Exception as exc:  # noqa: BLE001 - unreachable yet: keep waiting, say it once
            state = f"database unreachable ({type(exc).__name__})"
        if state != said:
            log.warning("waiting for the database migrations: %s (`engine migrate` applies them)", state)
            said = state
        if time.monotonic() >= deadline:
            raise NotMigrated(f"gave up after {timeout:.0f} s: {state}")
        time.sleep(poll)
