"""The course's classes: the engine's own record (``class_enrollments``) and what the course platform is told.

``enroll`` / ``unenroll`` steps are run by the ``classes`` connector when COURSE_WEBHOOK_ENABLED
(a signed webhook per class, ``connectors/classes.py``), and by nobody else when it is off. Either
way the engine's table is written when the step's result is recorded (``record_locally``), in the
transaction that records it: done once, and only for a step that did not fail. So the table is the
ledger of what the engine asked for and the platform accepted (or, with the flag off, of what the
engine decided), and a refund takes out exactly what the grant ledger says this membership gave.
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from connectors.base import Step, StepResult, StepStatus
from engine.db.models import ActionRun, ClassEnrollment, CourseClass, Membership
from engine.pipeline import ledger
from engine.rules.actions import CLASSES, run_by

CLASS_ACTIONS = run_by(CLASSES)
_ENROLL = "enroll"


def enroll_student(session: Session, student_id: int, key: str, name: str | None = None) -> bool:
    """Enroll a student in a class (created on first use); False if already enrolled."""
    course_class = session.scalar(select(CourseClass).where(CourseClass.key == key))
    if course_class is None:
        course_class = CourseClass(key=key, name=name or key)
        session.add(course_class)
        session.flush()
    exists = session.scalar(
        select(ClassEnrollment.id).where(
            ClassEnrollment.class_id == course_class.id, ClassEnrollment.student_id == student_id
        )
    )
    if exists is not None:
        return False
    session.add(ClassEnrollment(class_id=course_class.id, student_id=student_id))
    return True


def unenroll_student(session: Session, student_id: int, keys: list[str]) -> None:
    """Take a student out of these classes (a class they are not in is no error)."""
    class_ids = select(CourseClass.id).where(CourseClass.key.in_(keys))
    session.execute(
        delete(ClassEnrollment).where(ClassEnrollment.student_id == student_id, ClassEnrollment.class_id.in_(class_ids))
    )


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
) -> None:
    """Write a class step's effect into the engine's table as its result is recorded.

    Runs before the grant ledger records the result: an ``unenroll`` is narrowed as the connector's
    step was (the classes this membership enrolled in and no other membership still grants).
    """
    if run.action not in CLASS_ACTIONS or result.status is StepStatus.FAILED:
        return
    if run.action == _ENROLL:
        for key in run.params.get("classes", []):
            enroll_student(session, student_id, key, names.get(key))
        return
    step, ready = ledger.effective_step(session, run, membership)
    if ready is None:
        unenroll_student(session, student_id, list(step.params.get("classes", [])))
