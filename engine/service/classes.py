"""The course platform's read API: its classes, and each class's enrollments as a feed of changes.

A class's changes are read in ``(changed_at, id)`` order, removals included (a removed enrollment is
kept as a tombstone: engine.pipeline.classes). A cursor is the position of the last change handed
out; the next page starts after it. The writers of a class commit its changes in ``changed_at``
order (the class's lock, engine.pipeline.classes), so a change not visible yet will come after
every position already handed out: a poller that keeps its cursor misses no change and gets none
twice (a row changed again comes again, with its new state).

The cursor, ``<microseconds since 0001-01-01 UTC>-<id>``, is opaque to clients. Every text matching
:data:`CURSOR_PATTERN` is a position (one beyond the largest time or id is clamped to it), so the
API refuses a cursor only when the pattern does (422), never later.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from engine.db.models import ClassEnrollment, CourseClass, Membership, Student
from engine.service.class_schemas import ClassList, ClassOut, EnrollmentChange, EnrollmentPage
from engine.service.schemas import MAX_ID

CURSOR_PATTERN = r"^[0-9]{1,18}-[0-9]{1,16}$"
_ORIGIN = datetime(1, 1, 1, tzinfo=UTC)
_MAX_MICROSECONDS = (datetime.max.replace(tzinfo=UTC) - _ORIGIN) // timedelta(microseconds=1)


@dataclass(frozen=True)
class Position:
    """A place in a class's changes: after every change before ``(changed_at, id)`` and that one."""

    changed_at: datetime
    id: int

    @classmethod
    def start(cls, since: datetime | None = None) -> Position:
        """Before the first change (at or after ``since``; no zone: UTC)."""
        if since is None:
            return cls(_ORIGIN, 0)
        return cls(since if since.tzinfo else since.replace(tzinfo=UTC), 0)

    @classmethod
    def from_cursor(cls, cursor: str) -> Position:
        """The position a cursor names (the text matches :data:`CURSOR_PATTERN`)."""
        microseconds, _, row_id = cursor.partition("-")
        at = _ORIGIN + timedelta(microseconds=min(int(microseconds), _MAX_MICROSECONDS))
        return cls(at, min(int(row_id), MAX_ID))

    @property
    def cursor(self) -> str:
        return f"{(self.changed_at.astimezone(UTC) - _ORIGIN) // timedelta(microseconds=1)}-{self.id}"


def _names(session: Session, catalog: Mapping[str, str]) -> dict[str, str]:
    """Every class by key: the catalog's, and those the engine enrolled in (a class since dropped
    from the catalog keeps its enrollments and their removals)."""
    stored = dict(session.execute(select(CourseClass.key, CourseClass.name)).all())
    return dict(sorted({**stored, **catalog}.items()))


def class_list(session: Session, catalog: Mapping[str, str]) -> ClassList:
    """Every class with the number of students enrolled now."""
    counts = dict(
        session.execute(
            select(CourseClass.key, func.count())
            .join(ClassEnrollment, ClassEnrollment.class_id == CourseClass.id)
            .where(ClassEnrollment.removed_at.is_(None))
            .group_by(CourseClass.key)
        ).all()
    )
    return ClassList(
        items=[
            ClassOut(key=key, name=name, enrollments=counts.get(key, 0))
            for key, name in _names(session, catalog).items()
        ]
    )


def enrollment_page(
    session: Session, key: str, catalog: Mapping[str, str], *, after: Position, limit: int
) -> EnrollmentPage | None:
    """The class's changes after ``after``, oldest first, at most ``limit``; None for an unknown class."""
    class_id = session.scalar(select(CourseClass.id).where(CourseClass.key == key))
    if class_id is None:
        return (
            EnrollmentPage(class_key=key, items=[], next_cursor=after.cursor, has_more=False)
            if key in catalog
            else None
        )
    row = ClassEnrollment
    rows = session.execute(
        select(row, Student.email, Student.name, Student.discord_id, Membership.product_key, Membership.state)
        .join(Student, Student.id == row.student_id)
        .outerjoin(Membership, Membership.id == row.membership_id)
        .where(
            row.class_id == class_id,
            row.changed_at >= after.changed_at,  # the index's range; the next line, its exact start
            or_(row.changed_at > after.changed_at, and_(row.changed_at == after.changed_at, row.id > after.id)),
        )
        .order_by(row.changed_at, row.id)
        .limit(limit + 1)
    ).all()
    page = rows[:limit]
    items = [
        EnrollmentChange(
            class_key=key,
            student_id=enrollment.student_id,
            email=email,
            name=name,
            discord_id=discord_id,
            product=product,
            membership_state=state,
            enrolled_at=enrollment.created_at,
            removed=enrollment.removed_at is not None,
            removed_at=enrollment.removed_at,
            changed_at=enrollment.changed_at,
        )
        for enrollment, email, name, discord_id, product, state in page
    ]
    end = Position(page[-1][0].changed_at, page[-1][0].id) if page else after
    return EnrollmentPage(class_key=key, items=items, next_cursor=end.cursor, has_more=len(rows) > limit)
