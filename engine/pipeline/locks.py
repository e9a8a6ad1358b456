"""One student at a time: a lock in the database, so it holds across worker processes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event, text
from sqlalchemy.orm import Session, sessionmaker

from engine.db.session import engine_of

# Advisory-lock namespace, so our keys never collide with another application's.
_NAMESPACE = 0x5E17
_LOCK = text("SELECT pg_advisory_lock(:ns, CAST(:id AS integer))")
_UNLOCK = text("SELECT pg_advisory_unlock(:ns, CAST(:id AS integer))")

_local_locks: dict[int, threading.RLock] = {}
_local_guard = threading.Lock()


def _local_lock(student_id: int) -> threading.RLock:
    with _local_guard:
        return _local_locks.setdefault(student_id, threading.RLock())


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
            connection.execute(_LOCK, {"ns": _NAMESPACE, "id": student_id})
            connection.commit()
            try:
                yield
            finally:
                connection.execute(_UNLOCK, {"ns": _NAMESPACE, "id": student_id})
                connection.commit()
        return
    with _local_lock(student_id):
        yield


class StudentHold:
    """One worker task's hold on one student, on ONE database connection.

    Every transaction of the task runs on that connection (``hold.sessions``), and the
    student's advisory lock is taken inside the first transaction that knows the student
    (:meth:`lock`): it costs no transaction of its own and is released when the hold
    ends. A task then needs one connection, not two. Same lock as :func:`student_lock`.
    """

    def __init__(self, sessions: sessionmaker[Session]):
        self._base = sessions
        self._engine = sessions.kw["bind"]
        self._postgres = self._engine.dialect.name == "postgresql"
        self._connection = None
        self._local: threading.RLock | None = None
        self.student_id: int | None = None
        self.sessions = sessions
        self._locked_on = None  # the DBAPI connection that holds the advisory lock

    def __enter__(self) -> StudentHold:
        if self._postgres:
            self._connection = self._engine.connect()
            self.sessions = sessionmaker(bind=self._connection, expire_on_commit=False)
        # One session for the whole hold: under the lock nobody else changes this student's
        # rows, so what a transaction loaded or wrote stays valid for the next one.
        self._session = self.sessions()
        # The identity map holds objects weakly; keep them, so a later transaction of this task
        # does not read again a row it already loaded (or wrote).
        kept: list = []
        event.listen(self._session, "loaded_as_persistent", lambda _session, obj: kept.append(obj))
        event.listen(self._session, "pending_to_persistent", lambda _session, obj: kept.append(obj))
        return self

    def lock(self, session: Session, student_id: int) -> None:
        """Take the student's lock inside ``session``'s transaction (once per hold)."""
        if self.student_id is not None:
            if self.student_id != student_id:
                raise RuntimeError("a hold locks one student")
            return
        if self._postgres:
            session.execute(_LOCK, {"ns": _NAMESPACE, "id": student_id})
            self._locked_on = session.connection().connection.dbapi_connection
        else:
            self._local = _local_lock(student_id)
            self._local.acquire()
        self.student_id = student_id

    @contextmanager
    def begin(self) -> Iterator[Session]:
        """A transaction on the hold's connection, still under the lock.

        If the connection was lost and replaced (the database restarted, a connection
        was killed), the server dropped the lock with it: take it again first.
        """
        session = self._session
        with session.begin():
            if self._postgres and self.student_id is not None:
                current = session.connection().connection.dbapi_connection
                if current is not self._locked_on:
                    session.execute(_LOCK, {"ns": _NAMESPACE, "id": self.student_id})
                    self._locked_on = current
            yield session

    def __exit__(self, *exc) -> None:
        self._session.close()
        if not self._postgres:
            if self._local is not None:
                self._local.release()
            return
        connection, self._connection = self._connection, None
        try:
            if self.student_id is not None and not connection.invalidated:
                connection.rollback()  # nothing is left open by the task; be sure
                connection.execute(_UNLOCK, {"ns": _NAMESPACE, "id": self.student_id})
                connection.commit()
        except Exception:
            connection.invalidate()  # the server drops the lock with the connection
            raise
        finally:
            connection.close()


def transaction_lock(session: Session, key: int) -> None:
    """Hold a database-wide lock named ``key`` until the session's transaction ends.

    For checks that several worker processes run at the same moment (the periodic sweep)
    and that must act once. SQLite: nothing (one process, writers serialised).
    """
    if session.get_bind().dialect.name == "postgresql":
        lock = text("SELECT pg_advisory_xact_lock(:ns, CAST(:key AS integer))")
        session.execute(lock, {"ns": _NAMESPACE + 1, "key": key})
