"""A class's changes commit in ``changed_at`` order (engine.pipeline.classes), on PostgreSQL: two
writers of one class meet at the class's lock, so a poller of the read API never misses a change
that was made before another but committed after it."""

from __future__ import annotations

import threading
from datetime import datetime

from fastapi.testclient import TestClient
from sqlalchemy import text

from engine.api.app import create_app
from engine.db.locks import Namespace
from engine.db.models import CourseClass
from engine.pipeline.classes import enroll_student, unenroll_student
from tests.api.test_classes_api import CLASS, COURSE_TOKEN, minutes, student
from tests.conftest import wait_until
from tests.fakes.course_poller import PollingPlatform


def _time(item: dict) -> datetime:
    return datetime.fromisoformat(item["changed_at"])


def _waiting_for_a_class_lock(h) -> int:
    """Transactions waiting for a class's lock now (pg_locks: a two-key advisory lock is classid, objid)."""
    with h.runtime.sessions() as session:
        return session.scalar(
            text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = :ns AND NOT granted"),
            {"ns": int(Namespace.CLASS)},
        )


def test_a_change_committed_after_a_later_one_is_not_skipped_by_a_poller(make_harness):
    """Ana's enrollment is written first (12:01) but its transaction stays open; Bia's (12:02) comes
    from another writer meanwhile. Were Bia's committed first, a poll in between would hand out Bia
    and move its cursor past 12:01 for good, and Ana would never be seen. Bia's writer waits for
    the class's lock instead, and the poller sees both, in order, once."""
    h = make_harness(course_api_token=COURSE_TOKEN)
    ana, bia = student(h, "ana@example.com"), student(h, "bia@example.com")
    with h.runtime.sessions.begin() as session:  # the class exists: the writers meet at its lock alone
        session.add(CourseClass(key=CLASS, name=CLASS))
    poller = PollingPlatform(TestClient(create_app(h.runtime)), COURSE_TOKEN)
    errors: list[BaseException] = []

    def bia_writer() -> None:
        try:
            with h.runtime.sessions.begin() as session:
                enroll_student(session, bia[0], CLASS, membership_id=bia[1], now=minutes(2))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    first = h.runtime.sessions()
    try:
        enroll_student(first, ana[0], CLASS, membership_id=ana[1], now=minutes(1))
        writer = threading.Thread(target=bia_writer)
        writer.start()
        wait_until(lambda: _waiting_for_a_class_lock(h) or not writer.is_alive(), what="Bia's writer to block or end")
        assert writer.is_alive(), "Bia's enrollment was written while Ana's was not committed yet"
        assert poller.poll(CLASS) == []  # neither committed
        first.commit()
    finally:
        first.close()
    writer.join(timeout=30)
    assert not writer.is_alive() and errors == []

    changes = poller.poll(CLASS)
    assert [item["email"] for item in changes] == ["ana@example.com", "bia@example.com"]
    assert _time(changes[0]) < _time(changes[1])
    assert poller.poll(CLASS) == [] and poller.emails(CLASS) == {"ana@example.com", "bia@example.com"}


def test_concurrent_writers_of_one_class_each_change_seen_once(make_harness):
    """Eight writers enrolling and removing students of one class at once while a poller polls:
    the poller's mirror ends as the table, and no change came twice."""
    h = make_harness(course_api_token=COURSE_TOKEN)
    people = [student(h, f"aluno{n}@example.com") for n in range(8)]
    poller = PollingPlatform(TestClient(create_app(h.runtime)), COURSE_TOKEN, limit=3)
    start, errors = threading.Barrier(len(people) + 1), []

    def writer(ids: tuple[int, int], n: int) -> None:
        try:
            start.wait(timeout=30)
            for round_ in range(3):
                with h.runtime.sessions.begin() as session:
                    enroll_student(session, ids[0], CLASS, membership_id=ids[1], now=minutes(round_))
                if (n + round_) % 2:
                    with h.runtime.sessions.begin() as session:
                        unenroll_student(session, ids[0], [CLASS], membership_id=ids[1], now=minutes(round_))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(ids, n)) for n, ids in enumerate(people)]
    for thread in threads:
        thread.start()
    start.wait(timeout=30)
    while any(thread.is_alive() for thread in threads):
        poller.poll(CLASS)
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    poller.poll(CLASS)

    with h.runtime.sessions() as session:
        enrolled = set(
            session.scalars(
                text(
                    "SELECT s.email FROM class_enrollments e JOIN students s ON s.id = e.student_id "
                    "WHERE e.removed_at IS NULL"
                )
            )
        )
    assert poller.emails(CLASS) == enrolled and len(enrolled) == 4  # the last round removes every other
    seen = [(item["email"], item["changed_at"]) for item in poller.received]
    assert len(seen) == len(set(seen))  # no change handed out twice
    times = [_time(item) for item in poller.received]
    assert times == sorted(times)
