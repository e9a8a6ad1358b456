"""What the world holds: Discord member roles, ManyChat tags, class enrollments; and the ledger.

Reads go through the connectors' own clients, so they are paced by the same limiters as
every step: List Guild Members in pages of 1,000 (discord.md 2.4a), getInfo per contact at
ManyChat's 10/s (manychat.md 2.3). A connector whose flag is off is not read: its kind is
reported as not compared.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.base import StudentRef
from engine.db.models import ClassEnrollment, CourseClass, Grant, Membership, Student
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
