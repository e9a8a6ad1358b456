"""The course's classes: the engine's own record (``class_enrollments``) and what the course platform is told.

``enroll`` / ``unenroll`` steps are run by the ``classes`` connector when COURSE_WEBHOOK_ENABLED
(a signed webhook per class, ``connectors/classes.py``), and by nobody else when it is off. Either
way the engine's table is written when the step's result is recorded (``record_locally``), in the
transaction that records it: done once, and only for a step that did not fail. So the table is the
ledger of what the engine asked for and the platform accepted (or, with the flag off, of what the
engine decided), and a refund takes out exactly what the grant ledger says this membership gave.

A removal is kept: the row gets ``removed_at`` (a tombstone) and a new enrollment revives it, so
the read API (``GET /api/v1/classes/{key}/enrollments``, engine.service.classes) can hand a
polling platform every change of a class in ``(changed_at, id)`` order. For its cursor to skip
nothing, a change must never become visible after a later one: the writers of one class are
serialised by the class's transaction lock (engine.db.locks, after the buyer's lock), and under
it each change gets a ``changed_at`` later than every change of the class already committed
(the clock, or the latest plus a microsecond: clocks of two workers may disagree). So changes
commit in ``changed_at`` order, and a reader that has seen one has seen every earlier one.
SQLite serialises every writer already (``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from connectors.base import Step, StepResult, StepStatus
from engine.db.locks import Namespace, transaction_lock
from engine.db.models import ActionRun, ClassEnrollment, CourseClass, Membership, utcnow
from engine.pipeline import ledger
from engine.rules.actions import CLASSES, run_by

CLASS_ACTIONS = run_by(CLASSES)
_ENROLL = "enroll"


_TICK = timedelta(microseconds=1)


def _class_for_writing(session: Session, key: str, name: str | None = None) -> CourseClass | None:
    """The class, its lock held until the transaction ends (created on first use when ``name`` is
    given; None: an unknown class, when it is not)."""
    transaction_lock(session, Namespace.CLASS, key)
    course_class = session.scalar(select(CourseClass).where(CourseClass.key == key))
    if course_class is None and name is not None:
        course_class = CourseClass(key=key, name=name or key)
        session.add(course_class)
        session.flush()
    return course_class


def _change_time(session: Session, class_id: int, now: datetime) -> datetime:
    """A change's time: ``now``, or just after the class's latest change if that is not earlier."""
    latest = session.scalar(select(func.max(ClassEnrollment.changed_at)).where(ClassEnrollment.class_id == class_id))
    return now if latest is None or latest < now else latest + _TICK


def enroll_student(
    session: Session,
    student_id: int,
    key: str,
    name: str | None = None,
    *,
    membership_id: int | None = None,
    now: datetime | None = None,
) -> bool:
    """Enroll a student in a class (created on first use; a removed enrollment is revived);
    False if already enrolled."""
    course_class = _class_for_writing(session, key, name or key)
    row = session.scalar(
        select(ClassEnrollment).where(
            ClassEnrollment.class_id == course_class.id, ClassEnrollment.student_id == student_id
        )
    )
    if row is not None and row.removed_at is None:
        return False
    at = _change_time(session, course_class.id, now or utcnow())
    if row is None:
        row = ClassEnrollment(class_id=course_class.id, student_id=student_id)
        session.add(row)
    row.membership_id, row.created_at, row.changed_at, row.removed_at = membership_id, at, at, None
    session.flush()
    return True


def unenroll_student(
    session: Session,
    student_id: int,
    keys: list[str],
    *,
    membership_id: int | None = None,
    now: datetime | None = None,
) -> None:
    """Take a student out of these classes (a class they are not in is no error): each enrollment
    becomes a tombstone."""
    for key in sorted(set(keys)):  # the classes' locks in key order
        course_class = _class_for_writing(session, key)
        if course_class is None:
            continue
        row = session.scalar(
            select(ClassEnrollment).where(
                ClassEnrollment.class_id == course_class.id,
                ClassEnrollment.student_id == student_id,
                ClassEnrollment.removed_at.is_(None),
            )
        )
        if row is not None:
            at = _change_time(session, course_class.id, now or utcnow())
            row.membership_id, row.changed_at, row.removed_at = membership_id, at, at
            session.flush()


def step_for_platform(step: Step, run: ActionRun, membership: Membership | None, names: dict[str, str]) -> Step:
    """The step as the connector gets it: plus what the message carries that the context lacks."""
    planned = run.created_at.isoformat().replace("+00:00", "Z") if run.created_at else None
    return Step(
        step.action,
        {
            **step.params,
            "class_names": {key: names.get(key, key) for key in step.params.get("classes", [])},
            "membership_state": membership.state if membership else None,
            "planned_at": planned,
        },
    )


def without_platform(step: Step) -> StepResult | None:
    """A class step's result when no connector runs it (COURSE_WEBHOOK_ENABLED is off): done, the
    engine's table is written as the result is recorded. None for any other action."""
    if step.action not in CLASS_ACTIONS:
        return None
    keys = ", ".join(step.params.get("classes", [])) or "nothing"
    done = f"enrolled in {keys}" if step.action == _ENROLL else f"left {keys}"
    return StepResult.done(f"{done} (no webhook: COURSE_WEBHOOK_ENABLED is off)")


def record_locally(
    session: Session,
    run: ActionRun,
    membership: Membership | None,
    student_id: int,
    result: StepResult,
    names: dict[str, str],
    now: datetime | None = None,
) -> None:
    """Write a class step's effect into the engine's table as its result is recorded.

    Runs before the grant ledger records the result: an ``unenroll`` is narrowed as the connector's
    step was (the classes this membership enrolled in and no other membership still grants).
    """
    if run.action not in CLASS_ACTIONS or result.status is StepStatus.FAILED:
        return
    if run.action == _ENROLL:
        for key in sorted(set(run.params.get("classes", []))):  # the classes' locks in key order
            enroll_student(session, student_id, key, names.get(key), membership_id=run.membership_id, now=now)
        return
    step, ready = ledger.effective_step(session, run, membership)
    if ready is None:
        unenroll_student(
            session, student_id, list(step.params.get("classes", [])), membership_id=run.membership_id, now=now
        )
