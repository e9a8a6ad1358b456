"""The course's own classes: enroll and unenroll live in our database."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from connectors.base import Step, StepContext, StepResult
from engine.db.models import ClassEnrollment, CourseClass


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


class ClassesConnector:
    name = "classes"
    actions = frozenset({"enroll", "unenroll"})

    def __init__(self, sessions: sessionmaker[Session], class_names: dict[str, str] | None = None):
        self._sessions = sessions
        self._names = class_names or {}

    def run(self, step: Step, ctx: StepContext) -> StepResult:
        if ctx.student.id is None:
            return StepResult.failed("classes.no_student", "the step has no student")
        keys = list(step.params.get("classes", []))
        with self._sessions.begin() as session:
            if step.action == "enroll":
                for key in keys:
                    enroll_student(session, ctx.student.id, key, self._names.get(key))
                return StepResult.done(f"enrolled in {', '.join(keys) or 'nothing'}")
            class_ids = select(CourseClass.id).where(CourseClass.key.in_(keys))
            session.execute(
                delete(ClassEnrollment).where(
                    ClassEnrollment.student_id == ctx.student.id, ClassEnrollment.class_id.in_(class_ids)
                )
            )
            return StepResult.done(f"left {', '.join(keys) or 'nothing'}")
