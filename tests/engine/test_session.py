"""engine.db.session: the connection pool's limits, and a password kept out of the URL."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

import pytest
from sqlalchemy.exc import OperationalError

from engine.db import session
from engine.db.migrate import database_revisions
from engine.settings import Settings


def test_a_database_that_never_answers_fails_the_connection_instead_of_holding_it(monkeypatch):
    """libpq alone waits for ever on a server that takes the connection and never speaks: the pool
    and the migration check at start give up after CONNECT_TIMEOUT_SECONDS, or after the URL's
    own connect_timeout."""
    listener = socket.create_server(("127.0.0.1", 0))  # the kernel accepts; nobody answers
    silent = f"postgresql://engine@127.0.0.1:{listener.getsockname()[1]}/silent"
    monkeypatch.setattr(session, "CONNECT_TIMEOUT_SECONDS", 3600)  # would outlast the join below
    own_limit = session.make_engine(Settings(ENGINE_ENV="test", database_url=f"{silent}?connect_timeout=2"))
    monkeypatch.setattr(session, "CONNECT_TIMEOUT_SECONDS", 2)
    default_limit = session.make_engine(Settings(ENGINE_ENV="test", database_url=silent))
    attempts: dict[str, Callable[[], object]] = {
        "pool, default limit": default_limit.connect,
        "pool, the URL's limit": own_limit.connect,
        "migration check": lambda: database_revisions(Settings(ENGINE_ENV="test", database_url=silent)),
    }
    errors: dict[str, BaseException] = {}

    def attempt(name: str) -> None:
        try:
            attempts[name]()
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            errors[name] = exc

    threads = [threading.Thread(target=attempt, args=(name,), daemon=True) for name in attempts]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        listener.close()
    assert set(errors) == set(attempts), f"hung: {set(attempts) - set(errors)}"
    for name, error in errors.items():
        assert isinstance(error, OperationalError) and "timeout expired" in str(error), name


def test_a_postgres_password_with_symbols_reaches_libpq_outside_the_url(monkeypatch):
    """Compose passes POSTGRES_PASSWORD as PGPASSWORD, never inside DATABASE_URL."""
    from psycopg import pq
    from sqlalchemy.engine import make_url

    from engine.settings import Settings

    password = "p@ss:w/rd#?%&"
    monkeypatch.setenv("PGPASSWORD", password)
    settings = Settings(ENGINE_ENV="test", database_url="postgresql://engine@postgres:5432/engine", _env_file=None)
    url = make_url(settings.sqlalchemy_url)
    assert (url.username, url.password, url.host, url.database) == ("engine", None, "postgres", "engine")
    defaults = {option.keyword: option.val for option in pq.Conninfo.get_defaults()}
    assert defaults[b"password"] == password.encode()
    # The same password inside a URL is misread: that is what the compose file avoids.
    with pytest.raises(ValueError):
        make_url(f"postgresql://engine:{password}@postgres:5432/engine").port  # noqa: B018
