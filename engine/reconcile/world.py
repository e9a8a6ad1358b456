"""What the world holds: Discord member roles, ManyChat tags, class enrollments; and the ledger.

Reads go through the connectors' own clients, so they are paced by the same limiters as
every step: List Guild Members in pages of 1,000 (discord.md 2.4a), getInfo per contact at
ManyChat's 10/s (manychat.md 2.3). A connector whose flag is off is not read: its kind is
reported as not compared. Classes come from the course platform's own list when
COURSE_ENROLLMENTS_URL is set (:func:`read_platform_classes`), else from the engine's table.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.base import StudentRef
from engine.db.models import ClassEnrollment, CourseClass, Grant, Membership, Student
from engine.lifecycle.access import ProductAccess, product_resources
from engine.pipeline.runtime import Runtime
from engine.reconcile.diff import MembershipView, StudentView
from engine.rules.actions import granting

log = logging.getLogger(__name__)

# progress(label, total) -> a context manager yielding update(n)
Progress = Callable[[str, int], AbstractContextManager[Callable[[int], Any]]]


def no_progress(label: str, total: int) -> AbstractContextManager[Callable[[int], Any]]:
    return nullcontext(lambda n: None)


def load_students(session: Session, student_ids: Collection[int] | None = None) -> list[StudentView]:
    """Every student with a membership (or those of ``student_ids``), their memberships and what
    the ledger says the engine granted."""
    students: dict[int, StudentView] = {}
    query = (
        select(
            Student.id,
            Student.email,
            Student.discord_id,
            Student.manychat_subscriber_id,
            Membership.id,
            Membership.product_key,
            Membership.state,
        )
        .join(Membership, Membership.student_id == Student.id)
        .order_by(Student.id, Membership.id)
    )
    grants_query = select(Grant.student_id, Grant.membership_id, Grant.kind, Grant.resource)
    if student_ids is not None:
        query = query.where(Student.id.in_(student_ids))
        grants_query = grants_query.where(Grant.student_id.in_(student_ids))
    rows = session.execute(query).all()
    for student_id, email, discord_id, subscriber_id, membership_id, product, state in rows:
        view = students.get(student_id)
        if view is None:
            view = students[student_id] = StudentView(student_id, email, discord_id, subscriber_id, [])
        view.memberships.append(MembershipView(membership_id, product, state))
    for student_id, membership_id, kind, resource in session.execute(grants_query):
        view = students.get(student_id)
        if view is not None:
            view.owned.setdefault((kind, resource), []).append(membership_id)
    return list(students.values())


def read_classes(session: Session, students: Iterable[StudentView], student_ids: Collection[int] | None = None) -> None:
    """The classes each student is enrolled in now (every enrollment, or those of ``student_ids``)."""
    enrolled: dict[int, set[str]] = {}
    query = (
        select(ClassEnrollment.student_id, CourseClass.key)
        .join(CourseClass, CourseClass.id == ClassEnrollment.class_id)
        .where(ClassEnrollment.removed_at.is_(None))  # a removal is kept as a tombstone
    )
    if student_ids is not None:
        query = query.where(ClassEnrollment.student_id.in_(student_ids))
    for student_id, key in session.execute(query):
        enrolled.setdefault(student_id, set()).add(key)
    for student in students:
        student.actual["class"] = enrolled.get(student.id, set())


def read_discord(rt: Runtime, progress: Progress) -> dict[str, set[str]] | str:
    """Every guild member's roles by user id, or why roles cannot be compared."""
    connector = rt.connector_for(granting("discord_role"))
    if not hasattr(connector, "list_members"):
        return "Discord roles not compared: DISCORD_ENABLED is off"
    from connectors.errors import WireError

    roles: dict[str, set[str]] = {}
    try:
        with progress("reading Discord members", 0) as update:
            for member in connector.list_members():
                user = member.get("user") or {}
                if user.get("id"):
                    roles[str(user["id"])] = {str(r) for r in member.get("roles") or []}
                    update(1)
    except WireError as exc:
        log.warning("reconcile: cannot list guild members: %s", exc)
        return f"Discord roles not compared: {exc.error}: {exc.detail}"
    return roles


def assign_roles(students: Iterable[StudentView], roles: dict[str, set[str]]) -> None:
    for student in students:
        if student.discord_id is None:
            student.actual["discord_role"] = set()  # no account holds no role
        else:
            student.actual["discord_role"] = roles.get(student.discord_id)  # None: not in the server


def read_manychat(
    rt: Runtime, students: list[StudentView], relevant: Callable[[StudentView], bool], progress: Progress
) -> tuple[str | None, dict[int, str]]:
    """Fill the tags of each student for whom tags matter; returns (note or None, subscriber ids learned)."""
    connector = rt.connector_for(granting("manychat_tag"))
    if not hasattr(connector, "subscriber_tags"):
        return "ManyChat tags not compared: MANYCHAT_ENABLED is off", {}
    from connectors.errors import WireError

    asked = [s for s in students if relevant(s)]
    learned: dict[int, str] = {}
    with progress("reading ManyChat contacts", len(asked)) as update:
        for student in asked:
            try:
                subscriber = student.manychat_subscriber_id or connector.find_subscriber(
                    StudentRef(id=student.id, email=student.email)
                )
                tags = connector.subscriber_tags(subscriber) if subscriber else None
            except WireError as exc:
                log.warning("reconcile: ManyChat refused a read: %s", exc)
                return f"ManyChat tags not compared: {exc.error}: {exc.detail}", learned
            if subscriber and not student.manychat_subscriber_id and tags is not None:
                learned[student.id] = subscriber
            student.actual["manychat_tag"] = tags  # None: no contact found
            update(1)
    return None, learned


# Where a comparison's classes came from (ClassesRead.source).
PLATFORM = "platform"  # the course platform's own list (COURSE_ENROLLMENTS_URL)
TABLE = "table"  # the engine's class_enrollments table: the platform is not read
FAILED = "failed"  # the platform could not be read: classes not compared


@dataclass
class ClassesRead:
    """How the classes were read, and what the platform holds that matches none of the students read."""

    source: str
    reason: str = ""  # why not the platform: a setting, or the platform's error
    strangers: dict[str, list[str]] = field(default_factory=dict)  # class key -> e-mails

    @property
    def compared(self) -> bool:
        return self.source != FAILED

    def note(self) -> str | None:
        if self.source == TABLE:
            return f"classes compared with the engine's own table, not the course platform's list: {self.reason}"
        if self.source == FAILED:
            return f"classes not compared: {self.reason}"
        return None


def class_keys(students: Iterable[StudentView], access: dict[str, ProductAccess]) -> list[str]:
    """The classes worth asking the platform about: those the students' products may give, and those
    the ledger says the engine gave them."""
    keys: set[str] = set()
    for student in students:
        keys.update(resource for kind, resource in student.owned if kind == "class")
        for membership in student.memberships:
            product = access.get(membership.product)
            if product is None:
                continue
            held = [*product_resources(product.product)]
            for node in product.by_node.values():
                held += [*node.must, *node.may]
            keys.update(resource for kind, resource in held if kind == "class")
    return sorted(keys)


def read_platform_classes(
    rt: Runtime, students: list[StudentView], keys: Collection[str], progress: Progress
) -> ClassesRead:
    """Each student's classes as the course platform holds them, when COURSE_ENROLLMENTS_URL is set
    (and COURSE_WEBHOOK_ENABLED on); otherwise the engine's table (:func:`read_classes`) is left as
    read. A platform that cannot be read leaves the classes not compared, never half-read."""
    connector = rt.connector_for(granting("class"))
    if not hasattr(connector, "list_enrollments"):
        return ClassesRead(TABLE, "COURSE_WEBHOOK_ENABLED is off")
    if not connector.reads_enrollments:
        return ClassesRead(TABLE, "COURSE_ENROLLMENTS_URL is not set")
    from connectors.errors import WireError

    by_email = {student.email.strip().lower(): student for student in students}
    held: dict[int, set[str]] = {student.id: set() for student in students}
    strangers: dict[str, list[str]] = {}
    with progress("reading the course platform's enrollments", len(keys)) as update:
        for key in keys:
            try:
                for email in connector.list_enrollments(key):
                    student = by_email.get(email)
                    if student is None:
                        strangers.setdefault(key, []).append(email)
                    else:
                        held[student.id].add(key)
            except WireError as exc:
                log.warning("reconcile: cannot read the course platform's enrollments: %s", exc)
                return ClassesRead(FAILED, f"{exc.error}: {exc.detail}")
            update(1)
    for student in students:
        student.actual["class"] = held[student.id]
    return ClassesRead(PLATFORM, strangers=strangers)
