"""What people did: the history entries an operator, the admin API or the CLI wrote (not the
worker's own), newest first — the admin page's "Audit" view — and the entries the page writes
itself (sign-in, sign-out, a note on a student)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from engine.db.models import Event, History, Student
from engine.pipeline.history import record_history

PAGE_ACTOR = "admin:"  # + the operator's name: what the admin page writes as the actor
# Entries no person asked for: the worker's, and the scheduled reconcile's.
_MACHINE_ACTORS = ("worker", "reconcile:schedule")


def page_actor(operator: str) -> str:
    return f"{PAGE_ACTOR}{operator}"


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    kind: str
    student_email: str | None
    event_id: int | None
    note: str | None
    detail: dict[str, Any]


@dataclass(frozen=True)
class AuditPage:
    items: list[AuditEntry]
    total: int
    limit: int
    offset: int


def record(
    session: Session,
    operator: str,
    kind: str,
    *,
    at: datetime,
    note: str | None = None,
    student_id: int | None = None,
    event_id: int | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """One entry by ``operator`` from the page, committed."""
    body = dict(detail or {})
    if note:
        body["note"] = note
    record_history(
        session,
        kind=kind,
        at=at,
        student_id=student_id,
        event_id=event_id,
        actor=page_actor(operator),
        detail=body or None,
    )
    session.commit()


def audit_page(
    session: Session,
    *,
    actor: str | None = None,
    kind: str | None = None,
    student_email: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> AuditPage:
    """People's entries, newest first: by ``actor`` (exactly, or ``admin:`` for every operator of
    the page), of ``kind``, about the student with ``student_email``."""
    conditions = [History.actor.is_not(None), History.actor.not_in(_MACHINE_ACTORS)]
    if actor == PAGE_ACTOR:
        conditions.append(History.actor.startswith(PAGE_ACTOR))
    elif actor:
        conditions.append(History.actor == actor)
    if kind:
        conditions.append(History.kind == kind)
    if student_email:
        conditions.append(
            History.student_id.in_(select(Student.id).where(Student.email == student_email.strip().lower()))
        )
    total = session.scalar(select(func.count()).select_from(History).where(*conditions)) or 0
    rows = session.execute(
        select(History, Student.email, Event.id)
        .outerjoin(Student, Student.id == History.student_id)
        .outerjoin(Event, Event.id == History.event_id)
        .where(*conditions)
        .order_by(History.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    items = [
        AuditEntry(
            id=entry.id,
            at=entry.created_at,
            actor=entry.actor or "",
            kind=entry.kind,
            student_email=email,
            event_id=event_id,
            note=(entry.detail or {}).get("note"),
            detail={k: v for k, v in (entry.detail or {}).items() if k != "note"},
        )
        for entry, email, event_id in rows
    ]
    return AuditPage(items=items, total=total, limit=limit, offset=offset)


def audit_kinds(session: Session) -> list[str]:
    """The kinds of entries people wrote, for the view's filter."""
    return _written_by_people(session, History.kind)


def audit_actors(session: Session) -> list[str]:
    """Who wrote entries (``admin:ana``, ``admin-api``, ``cli``...), for the view's filter."""
    return _written_by_people(session, History.actor)


def _written_by_people(session: Session, column: InstrumentedAttribute[Any]) -> list[str]:
    """The distinct values of ``column`` over the entries people wrote, sorted."""
    people = History.actor.is_not(None), History.actor.not_in(_MACHINE_ACTORS)
    return list(session.scalars(select(column).where(*people).group_by(column).order_by(column)))
