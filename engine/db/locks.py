"""Every PostgreSQL advisory lock the engine takes: its namespace, its key and what it protects.

An advisory lock here is always the two-key form ``(namespace, key)``, so a namespace is ours
alone and no two uses can meet. SQLite (the embedded default, one process) has no advisory
locks: the callers fall back to in-process locks or to SQLite's serialised writers.

The lock order, everywhere (docs/architecture/index.md, "Locks, in one order"):

1. a Discord user's lock (the bot), then
2. the buyer's lock (a student and all their rows), then
3. an alert group's lock, then
4. a class's lock (several in one step: in key order), then
5. rows (``events``, ``memberships``, ``action_runs``, ...).

Nothing writes a row of a buyer's events, memberships, steps, grants, codes or timers before it
holds that buyer's lock; a lock of a lower number is never taken while one of a higher number is
held. The sweep's, the silence check's, the reconcile run's and the sync run's locks are taken alone.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from enum import IntEnum, unique

from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session


@unique  # two uses of one namespace could meet: refused at import
class Namespace(IntEnum):
    """The first key of every advisory lock; the comment says what the lock protects."""

    # Session lock, key hashtext(buyer e-mail): one task at a time on a buyer's events,
    # memberships, steps, grants, codes and timers, across worker processes.
    BUYER = 0x5E17
    # Transaction lock, key hashtext(group key): two workers raising the same new cause open one alert.
    ALERT_GROUP = 0x5E18
    # Session try-lock, key 0: one process at a time runs the periodic sweep.
    SWEEP = 0x5E19
    # Transaction lock, key hashtext(Discord user id): a user's /registrar attempts one at a time.
    DISCORD_USER = 0x5E1A
    # Session try-lock, key 0: one reconcile run at a time.
    RECONCILE = 0x5E1B
    # Transaction lock, key 0: the webhook-silence check alerts once when two sweeps meet.
    SILENCE = 0x5E1C
    # Transaction lock, key hashtext(class key): one writer at a time of a class's enrollments, so
    # that their changed_at follow their commit order and the read API's cursor skips no change
    # (engine.pipeline.classes). Taken where the row is written, after the buyer's lock.
    CLASS = 0x5E1D
    # Session try-lock, key 0: one `engine sync` run at a time (by hand or scheduled).
    SYNC = 0x5E1E


def is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def buyer_key(email: str) -> str:
    """The buyer lock's key: the e-mail as stored (trimmed, lower case), known before the student row exists."""
    return email.strip().lower()


LOCK_BUYER = text("SELECT pg_advisory_lock(:ns, hashtext(:key))").bindparams(ns=int(Namespace.BUYER))
UNLOCK_BUYER = text("SELECT pg_advisory_unlock(:ns, hashtext(:key))").bindparams(ns=int(Namespace.BUYER))


def lock_buyer_for_transaction(session: Session, email: str) -> None:
    """The buyer's lock until the session's transaction ends: for a short write outside a worker
    task (an admin's retry, a replay, a Discord link) that must not interleave with one."""
    transaction_lock(session, Namespace.BUYER, buyer_key(email))


def transaction_lock(session: Session, namespace: Namespace, key: str | int = 0) -> None:
    """Hold ``(namespace, key)`` until the session's transaction ends (PostgreSQL; nothing on SQLite)."""
    if not is_postgres(session):
        return
    if isinstance(key, int):
        statement = text("SELECT pg_advisory_xact_lock(:ns, CAST(:key AS integer))")
    else:
        statement = text("SELECT pg_advisory_xact_lock(:ns, hashtext(:key))")
    session.execute(statement, {"ns": int(namespace), "key": key})


_local_runs: defaultdict[Namespace, threading.Lock] = defaultdict(threading.Lock)


@contextmanager
def one_run_at_a_time(bind: Engine, namespace: Namespace) -> Iterator[bool]:
    """Yields whether this caller holds ``namespace``'s run for the block (a reconcile, a sync):
    the session try-lock on PostgreSQL, across processes; an in-process lock on SQLite (one process)."""
    if bind.dialect.name == "postgresql":
        with bind.connect() as connection, try_session_lock(connection, namespace) as got:
            yield got
        return
    lock = _local_runs[namespace]
    got = lock.acquire(blocking=False)
    try:
        yield got
    finally:
        if got:
            lock.release()


@contextmanager
def try_session_lock(connection: Connection, namespace: Namespace, key: int = 0) -> Iterator[bool]:
    """Try ``(namespace, key)`` on ``connection`` for the block; yields whether it was taken.

    A session lock outlives transactions, so nothing is left open while the block runs.
    """
    got = connection.execute(
        text("SELECT pg_try_advisory_lock(:ns, CAST(:key AS integer))"), {"ns": int(namespace), "key": key}
    ).scalar()
    connection.commit()
    try:
        yield bool(got)
    finally:
        if got:
            connection.execute(
                text("SELECT pg_advisory_unlock(:ns, CAST(:key AS integer))"), {"ns": int(namespace), "key": key}
            )
            connection.commit()
