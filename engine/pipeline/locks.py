"""One buyer at a time: a lock in the database, so it holds across worker processes.

The lock is keyed by the buyer's e-mail (``engine.db.locks``), not the student row's id: a
webhook's buyer is known before the student exists, so the lock is taken before anything of
theirs is read for writing or written (the student row included). Then two tasks never hold
rows of the same buyer in opposite orders.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event, select
from sqlalchemy.orm import Session, sessionmaker

from engine.db.locks import LOCK_BUYER, UNLOCK_BUYER, buyer_key, lock_buyer_for_transaction
from engine.db.models import Event, Student
from engine.db.session import engine_of

_local_locks: dict[str, threading.RLock] = {}
_local_guard = threading.Lock()


def _local_lock(key: str) -> threading.RLock:
    with _local_guard:
        return _local_locks.setdefault(key, threading.RLock())


def student_email(session: Session, student_id: int) -> str:
    student = session.get(Student, student_id)  # often loaded already: no query
    if student is None:
        raise LookupError(f"student {student_id} not found")
    return student.email


def event_buyer(session: Session, email: str | None, student_id: int | None) -> str | None:
    """The buyer an event belongs to: its e-mail, else its student's (None: a body with no e-mail)."""
    return email or (student_email(session, student_id) if student_id else None)


def lock_event_buyer(session: Session, event_id: int) -> None:
    """The buyer's lock of this event until the transaction ends (nothing if it names no buyer)."""
    found = session.execute(select(Event.email, Event.student_id).where(Event.id == event_id)).first()
    if found is None:
        return
    email = event_buyer(session, found.email, found.student_id)
    if email:
        lock_buyer_for_transaction(session, email)


@contextmanager
def student_lock(sessions: sessionmaker[Session], student_id: int) -> Iterator[None]:
    """Hold a student's (buyer's) lock for the block.

    PostgreSQL: a session-level advisory lock on a dedicated connection; a worker that
    dies loses its connection and so its lock. SQLite (the embedded default runs one
    process): an in-process lock, since SQLite serialises writers anyway.
    """
    bind = engine_of(sessions)
    with sessions() as session:
        key = buyer_key(student_email(session, student_id))
    if bind.dialect.name == "postgresql":
        with bind.connect() as connection:
            connection.execute(LOCK_BUYER, {"key": key})
            connection.commit()
            try:
                yield
            finally:
                connection.execute(UNLOCK_BUYER, {"key": key})
                connection.commit()
        return
    with _local_lock(key):
        yield


class StudentHold:
    """One worker task's hold on one buyer, on ONE database connection.

    Every transaction of the task runs on that connection (``hold.sessions``), and the
    buyer's advisory lock is taken inside the first transaction that knows the buyer
    (:meth:`lock`), before it writes anything: it costs no transaction of its own and is
    released when the hold ends. A task then needs one connection, not two. Same lock as
    :func:`student_lock`.
    """

    def __init__(self, sessions: sessionmaker[Session]):
        self._base = sessions
        self._engine = sessions.kw["bind"]
        self._postgres = self._engine.dialect.name == "postgresql"
        self._connection = None
        self._local: threading.RLock | None = None
        self.key: str | None = None  # the buyer locked (their e-mail)
        self.student_id: int | None = None  # their student row, once known
        self.sessions = sessions
        self._locked_on = None  # the DBAPI connection that holds the advisory lock

    def __enter__(self) -> StudentHold:
        if self._postgres:
            self._connection = self._engine.connect()
            self.sessions = sessionmaker(bind=self._connection, expire_on_commit=False)
        # One session for the whole hold: under the lock nobody else changes this buyer's
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
        if self.student_id == student_id:
            return
        self.lock_buyer(session, student_email(session, student_id))
        self.student_id = student_id

    def lock_buyer(self, session: Session, email: str) -> None:
        """Take the lock of the buyer with this e-mail inside ``session``'s transaction (once per hold)."""
        key = buyer_key(email)
        if self.key is not None:
            if self.key != key:
                raise RuntimeError("a hold locks one buyer")
            return
        if self._postgres:
            session.execute(LOCK_BUYER, {"key": key})
            self._locked_on = session.connection().connection.dbapi_connection
        else:
            self._local = _local_lock(key)
            self._local.acquire()
        self.key = key

    @property
    def locked(self) -> bool:
        return self.key is not None

    @contextmanager
    def begin(self) -> Iterator[Session]:
        """A transaction on the hold's connection, still under the lock.

        If the connection was lost and replaced (the database restarted, a connection
        was killed), the server dropped the lock with it: take it again first.
        """
        session = self._session
        with session.begin():
            if self._postgres and self.key is not None:
                current = session.connection().connection.dbapi_connection
                if current is not self._locked_on:
                    session.execute(LOCK_BUYER, {"key": self.key})
                    self._locked_on = current
            yield session

    def release_connection(self) -> None:
        """Give the connection (and with it the lock) back before a wait: the next
        :meth:`begin` connects again and takes the lock again first."""
        if not self._postgres or self._connection is None:
            return
        self._session.close()
        self._connection.invalidate()  # closed: the server drops the lock with it
        self._locked_on = None

    def __exit__(self, *exc) -> None:
        self._session.close()
        if not self._postgres:
            if self._local is not None:
                self._local.release()
            return
        connection, self._connection = self._connection, None
        try:
            if self.key is not None and not connection.invalidated:
                connection.rollback()  # nothing is left open by the task; be sure
                connection.execute(UNLOCK_BUYER, {"key": self.key})
                connection.commit()
        except Exception:
            connection.invalidate()  # the server drops the lock with the connection
            raise
        finally:
            connection.close()
