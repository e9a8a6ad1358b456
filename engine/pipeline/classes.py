"""The course's own classes: enrollments are rows in the engine's database, not an outside system."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

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


def unenroll_student(session: Session, student_id: int, keys: list[str]) -> None:
    """Take a student out of these classes (a class they are not in is no error)."""
    class_ids = select(CourseClass.id).where(CourseClass.key.in_(keys))
    session.execute(
        delete(ClassEnrollment).where(ClassEnrollment.student_id == student_id, ClassEnrollment.class_id.in_(class_ids))
    )
