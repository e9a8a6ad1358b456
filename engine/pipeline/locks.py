"""One student at a time: a lock in the database, so it holds across worker processes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from engine.db.session import engine_of

# Advisory-lock namespace, so our keys never collide with another application's.
_NAMESPACE = 0x5E17

_local_locks: dict[int, threading.RLock] = {}
_local_guard = threading.Lock()


@contextmanager
def student_lock(sessions: sessionmaker[Session], student_id: int) -> Iterator[None]:
    """Hold the per-student lock for the block.

    PostgreSQL: a session-level advisory lock on a dedicated connection; a worker that
    dies loses its connection and so its lock. SQLite (the embedded default runs one
    process): an in-process lock, since SQLite serialises writers anyway.
    """
    bind = engine_of(sessions)
    if bind.dialect.name == "postgresql":
        with bind.connect() as connection:
            connection.execute(
                text("SELECT pg_advisory_lock(:ns, CAST(:id AS integer))"), {"ns": _NAMESPACE, "id": student_id}
            )
            connection.commit()
            try:
                yield
            finally:
                connection.execute(
                    text("SELECT pg_advisory_unlock(:ns, CAST(:id AS integer))"), {"ns": _NAMESPACE, "id": student_id}
                )
                connection.commit()
        return
    with _local_guard:
        lock = _local_locks.setdefault(student_id, threading.RLock())
    with lock:
        yield


def transaction_lock(session: Session, key: int) -> None:
    """Hold a database-wide lock named ``key`` until the session's transaction ends.

    For checks that several worker processes run at the same moment (the periodic sweep)
    and that must act once. SQLite: nothing (one process, writers serialised).
    """
    if session.get_bind().dialect.name == "postgresql":
        lock = text("SELECT pg_advisory_xact_lock(:ns, CAST(:key AS integer))")
        session.execute(lock, {"ns": _NAMESPACE + 1, "key": key})
