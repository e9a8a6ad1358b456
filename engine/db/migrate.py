"""Apply Alembic migrations (``engine migrate``; also at ``engine serve`` start)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, pool

from engine.settings import Settings, get_settings

MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"
log = logging.getLogger(__name__)


class NotMigrated(RuntimeError):
    pass


def alembic_config(settings: Settings | None = None) -> Config:
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
    command.upgrade(alembic_config(settings), revision)


def current_revisions(settings: Settings) -> tuple[set[str], set[str]]:
    """(the database's revisions, the code's heads). Raises if the database is unreachable."""
    heads = set(ScriptDirectory.from_config(alembic_config(settings)).get_heads())
    engine = create_engine(settings.sqlalchemy_url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            return set(MigrationContext.configure(connection).get_current_heads()), heads
    finally:
        engine.dispose()


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
