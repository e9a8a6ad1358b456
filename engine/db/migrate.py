"""Apply Alembic migrations (``engine migrate``; also at ``engine serve`` start).

Whether the database is already at the code's head is answered without importing Alembic (about
0.4 s of every ``engine serve`` / ``engine worker`` start): the revision ids are read from the
migration files and the ``alembic_version`` table. Alembic itself runs only to migrate.
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


def upgrade(settings: Settings | None = None, revision: str = "head") -> None:
    settings = settings or get_settings()
    if settings.sqlalchemy_url.startswith("sqlite"):
        settings.var_dir.mkdir(parents=True, exist_ok=True)
    if revision == "head" and _at_head(settings):
        return
    from alembic import command

    command.upgrade(alembic_config(settings), revision)


def code_heads() -> set[str]:
    """The newest revisions of ``migrations/versions``: every ``revision`` that no file names as
    its ``down_revision``. Read from the files' literal assignments, as Alembic reads them."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        values = {}
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
                        values[target.id] = ast.literal_eval(node.value)
        if "revision" not in values:
            continue
        revisions.add(values["revision"])
        down = values.get("down_revision")
        parents.update(down if isinstance(down, tuple | list) else [down] if down else [])
    return revisions - parents


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
