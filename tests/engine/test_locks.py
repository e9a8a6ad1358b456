"""The lock order and conflicts (issue 21): the buyer's lock is taken before their rows are written,
no lock is held across a wait, and a deadlock is a conflict to retry, never an outage."""

from __future__ import annotations

import threading

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, OperationalError

from engine.db.conflicts import CONFLICT_RETRIES, is_conflict, retry_conflicts
from engine.db.locks import Namespace
from engine.pipeline.execution import is_connection_error, is_retryable
from engine.pipeline.locks import StudentHold

EMAIL = "ana.locks@example.com"


def other_holds(dsn: str, email: str = EMAIL) -> bool:
    """Whether another connection holds the buyer's lock now (it cannot take it)."""
    with psycopg.connect(dsn, autocommit=True) as connection:
        got = connection.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))", (int(Namespace.BUYER), email))
        taken = got.fetchone()[0]
        if taken:
            connection.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (int(Namespace.BUYER), email))
        return not taken


@pytest.fixture
def dsn(pg: str) -> str:
    return pg.replace("postgresql+psycopg://", "postgresql://")


def test_the_buyer_lock_is_keyed_by_the_email_as_stored(make_harness, dsn):
    h = make_harness()
    with StudentHold(h.runtime.sessions) as hold, hold.begin() as session:
        hold.lock_buyer(session, "  Ana.Locks@Example.com ")
        assert other_holds(dsn)
        with pytest.raises(RuntimeError, match="one buyer"):
            hold.lock_buyer(session, "bia@example.com")
    assert not other_holds(dsn)


def test_waiting_for_the_database_releases_the_lock_and_the_next_transaction_takes_it_again(make_harness, dsn):
    h = make_harness()
    with StudentHold(h.runtime.sessions) as hold:
        with hold.begin() as session:
            hold.lock_buyer(session, EMAIL)
        assert other_holds(dsn)
        hold.release_connection()  # what drain_student does before it waits for the database
        assert not other_holds(dsn)
        with hold.begin() as session:
            assert session.execute(text("SELECT 1")).scalar() == 1
        assert other_holds(dsn)
    assert not other_holds(dsn)


def _deadlock(make_harness) -> DBAPIError:
    """A real deadlock between two transactions of the engine's own sessions."""
    sessions = make_harness().runtime.sessions
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def take(first: int, second: int) -> None:
        try:
            with sessions.begin() as session:
                session.execute(text("SELECT pg_advisory_xact_lock(1, :k)"), {"k": first})
                barrier.wait()
                session.execute(text("SELECT pg_advisory_xact_lock(1, :k)"), {"k": second})
        except DBAPIError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=take, args=pair) for pair in ((1, 2), (2, 1))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    [error] = errors  # PostgreSQL ends one of the two
    return error


def test_a_deadlock_is_a_conflict_not_an_outage(make_harness):
    error = _deadlock(make_harness)
    assert isinstance(error, OperationalError)  # how SQLAlchemy wraps it: it used to mean "no database"
    assert is_conflict(error)
    assert not is_connection_error(error)
    assert is_retryable(error)


class _Conflict(DBAPIError):
    def __init__(self, sqlstate: str):
        orig = type("Orig", (Exception,), {"sqlstate": sqlstate})("deadlock detected")
        super().__init__("SELECT 1", {}, orig)


def test_a_conflict_is_retried_then_handed_back(monkeypatch):
    monkeypatch.setattr("engine.db.conflicts.time.sleep", lambda seconds: None)
    calls: list[int] = []

    def twice_then_fine() -> str:
        calls.append(1)
        if len(calls) < CONFLICT_RETRIES:
            raise _Conflict("40P01")
        return "done"

    assert retry_conflicts(twice_then_fine, "event 1") == "done"
    assert len(calls) == CONFLICT_RETRIES

    calls.clear()

    def always() -> None:
        calls.append(1)
        raise _Conflict("40001")

    with pytest.raises(DBAPIError):  # the queue retries the task later
        retry_conflicts(always, "event 1")
    assert len(calls) == CONFLICT_RETRIES

    calls.clear()

    def broken() -> None:
        calls.append(1)
        raise _Conflict("23505")  # a unique violation is no conflict: not retried

    with pytest.raises(DBAPIError):
        retry_conflicts(broken, "event 1")
    assert len(calls) == 1


def test_a_task_that_keeps_conflicting_goes_back_to_the_queue(monkeypatch):
    import engine.worker.tasks as worker

    scheduled: list[tuple] = []

    class Task:
        name = "process_event_task"

        def schedule(self, args, kwargs, delay, priority):
            scheduled.append((args, kwargs, priority))

    monkeypatch.setattr(worker, "process_event", lambda rt, event_id: (_ for _ in ()).throw(_Conflict("40P01")))
    monkeypatch.setattr(worker, "runtime", lambda: None)
    monkeypatch.setattr(worker, "get_queue", lambda: type("Q", (), {"process_event": Task()})())
    assert worker.process_event_task(7, attempt=2) is None
    assert scheduled == [((7,), {"attempt": 3}, 0)]
