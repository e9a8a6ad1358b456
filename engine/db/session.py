"""Engines and sessions for the configured database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

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

        @event.listens_for(engine, "begin")
        def _sqlite_begin(connection) -> None:
            # Take the write lock up front: no "database is locked" upgrade failures mid-way.
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    # Recycle instead of pinging on every checkout: a ping is a round trip per webhook.
    # Recycle instead of pinging on every checkout (a ping is a round trip per webhook). Sized so
    # two API processes, a worker and the bot stay under PostgreSQL's default 100 connections.
    return create_engine(url, pool_size=20, max_overflow=10, pool_recycle=1800)


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
