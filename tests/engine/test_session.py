"""engine.db.session: the connection pool's limits."""

from __future__ import annotations

import socket
import threading

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from engine.db import session
from engine.settings import Settings


def _engine(url: str, default_timeout: int, monkeypatch) -> Engine:
    monkeypatch.setattr(session, "CONNECT_TIMEOUT_SECONDS", default_timeout)
    return session.make_engine(Settings(ENGINE_ENV="test", database_url=url))


def test_a_database_that_never_answers_fails_the_connection_instead_of_holding_it(monkeypatch):
    """libpq alone waits for ever on a server that takes the connection and never speaks: the pool
    gives up after CONNECT_TIMEOUT_SECONDS, or after the URL's own connect_timeout."""
    listener = socket.create_server(("127.0.0.1", 0))  # the kernel accepts; nobody answers
    silent = f"postgresql://engine@127.0.0.1:{listener.getsockname()[1]}/silent"
    engines = {
        "default": _engine(silent, 2, monkeypatch),
        "url": _engine(f"{silent}?connect_timeout=2", 3600, monkeypatch),  # the default would outlast the join
    }
    errors: dict[str, BaseException] = {}

    def connect(name: str) -> None:
        try:
            engines[name].connect()
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            errors[name] = exc

    threads = [threading.Thread(target=connect, args=(name,), daemon=True) for name in engines]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        listener.close()
    assert set(errors) == {"default", "url"}, "a connection attempt hung"
    for error in errors.values():
        assert isinstance(error, OperationalError) and "timeout expired" in str(error)
