"""Engines and sessions for the configured database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from engine.db.folding import SQLITE_FUNCTION, sqlite_fold
from engine.settings import Settings, get_settings


def make_engine(settings: Settings) -> Engine:
    url = settings.sqlalchemy_url
    if url.startswith("sqlite"):
        settings.var_dir.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:
            # WAL lets the API read while the in-process worker writes; the driver's own
            # transaction handling is replaced by BEGIN IMMEDIATE below.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()
            # The search's accent folding (engine.db.folding): SQLite has no translate().
            dbapi_connection.create_function(SQLITE_FUNCTION, 1, sqlite_fold, deterministic=True)

        @event.listens_for(engine, "begin")
        def _sqlite_begin(connection) -> None:
            # Take the write lock up front: no "database is locked" upgrade failures mid-way.
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    # Recycle instead of pinging on every checkout (a ping is a round trip per webhook). The API's
    # default of 20 (+2) keeps two API processes, workers and the bot under PostgreSQL's default
    # 100; `engine worker` sizes its pool from its threads (DATABASE_POOL_SIZE overrides). A
    # checkout waits at most 5 s: a worker task then backs off and retries itself.
    size = settings.database_pool_size or 20
    return create_engine(
        url,
        pool_size=size,
        max_overflow=_OVERFLOW,
        pool_timeout=5,
        pool_recycle=1800,
        connect_args=connect_timeout_args(url),
    )


_OVERFLOW = 2
# A new connection gives up after this long (libpq waits for ever by default, so a database that
# takes the connection and never answers would hold the thread); `connect_timeout` in
# DATABASE_URL's query overrides it.
CONNECT_TIMEOUT_SECONDS = 10


def connect_timeout_args(url: str, seconds: int | None = None) -> dict[str, int]:
    """``connect_args`` that give a PostgreSQL connection attempt ``seconds`` (default
    CONNECT_TIMEOUT_SECONDS); none for SQLite, nor when the URL names its own connect_timeout."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if not parsed.drivername.startswith("postgresql") or "connect_timeout" in parsed.query:
        return {}
    return {"connect_timeout": seconds or CONNECT_TIMEOUT_SECONDS}


def worker_pool_size(threads: int) -> int:
    """A worker task holds one connection; plus the sweep, the alerts and a spare."""
    return threads + 3


def connection_room(settings: Settings) -> tuple[int, int, int] | None:
    """(max_connections, reserved for superusers, in use) of the PostgreSQL server; None elsewhere."""
    if not settings.sqlalchemy_url.startswith("postgresql"):
        return None
    with session_factory(settings).kw["bind"].connect() as connection:
        return room_of(connection)


def room_of(connection: Connection) -> tuple[int, int, int]:
    """(max_connections, reserved for superusers, in use) of the PostgreSQL server behind ``connection``."""
    from sqlalchemy import text

    limit = int(connection.execute(text("SHOW max_connections")).scalar())
    reserved = int(connection.execute(text("SHOW superuser_reserved_connections")).scalar())
    used = int(connection.execute(text("SELECT count(*) FROM pg_stat_activity")).scalar())
    return limit, reserved, used


def check_connection_budget(settings: Settings, *, role: str = "process") -> str | None:
    """Warn when this process's pool does not fit in what the server has left.

    Returns the warning (also logged), or None when it fits or the database is not PostgreSQL.
    """
    import logging

    room = connection_room(settings)
    if room is None:
        return None
    limit, reserved, used = room
    ours = session_factory(settings).kw["bind"].pool.size() + _OVERFLOW
    left = limit - reserved - used + 1  # our own check connection is among the used ones
    if ours <= left:
        return None
    message = (
        f"{role} may open {ours} database connections but PostgreSQL has {left} left "
        f"(max_connections={limit}, {used} in use, {reserved} reserved): lower --threads or "
        "DATABASE_POOL_SIZE, run fewer processes, or raise max_connections. Tasks that find no "
        "connection back off and retry, but throughput suffers."
    )
    logging.getLogger(__name__).warning(message)
    return message


_factories: dict[str, sessionmaker[Session]] = {}


def session_factory(settings: Settings | None = None) -> sessionmaker[Session]:
    """One engine (connection pool) per database URL per process."""
    settings = settings or get_settings()
    url = settings.sqlalchemy_url
    if url not in _factories:
        _factories[url] = sessionmaker(make_engine(settings), expire_on_commit=False)
    return _factories[url]


def engine_of(sessions: sessionmaker[Session]) -> Engine:
    """The engine (connection pool) a session factory is bound to; opens no connection."""
    with sessions() as session:
        return session.get_bind()


def dispose_all() -> None:
    for factory in _factories.values():
        engine_of(factory).dispose()
    _factories.clear()


@contextmanager
def session_scope(settings: Settings | None = None) -> Iterator[Session]:
    """A session whose transaction commits on success and rolls back on error."""
    session = session_factory(settings)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
