"""The admin page's student view, what the other read models do not hold: the student's access
per membership and resource — what the rules want now (as reconcile derives it), what the ledger
says the engine granted and, on demand, what Discord, ManyChat and the classes hold now, with what
reconcile would change; reconciling that one student; and whether an event is one of the student's."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from engine.db.models import Event, Grant, Student
from engine.lifecycle.access import Access, ProductAccess, derive, product_resources
from engine.pipeline.runtime import Runtime
from engine.reconcile.apply import Applied
from engine.reconcile.diff import KINDS, StudentView, desired
from engine.reconcile.runs import Busy
from engine.reconcile.student import StudentWorld, compute_student, reconcile_student
from engine.reconcile.world import load_students
from engine.rules.model import Rules
from engine.service.students import email_key

# What the rules want of one resource for one membership now.
MUST = "must"  # every history into this state holds it: reconcile grants it when missing
MAY = "may"  # some history holds it: kept if granted, not granted by reconcile
NO = "no"  # not in this state: what the engine granted is revoked (unless another membership wants it)
UNKNOWN_PRODUCT = "unknown_product"  # the membership's product is no longer in the rules: its grants are kept

# Where the ledger and the rules disagree (on the page: "differences").
NOT_GRANTED = "not_granted"  # the rules want it, the ledger has no grant of it for the student
NOT_ALLOWED = "not_allowed"  # the engine granted it, the rules no longer allow it for the student


@dataclass(frozen=True)
class AccessRow:
    product: str
    membership_id: int
    kind: str  # discord_role | manychat_tag | class
    resource: str
    wanted: str  # MUST | MAY | NO | UNKNOWN_PRODUCT
    granted: str  # applied | pending (wanted, not applied yet) | no
    difference: str | None  # NOT_GRANTED | NOT_ALLOWED | None
    held: bool | None = None  # live: held now (None: not read, or unknown)
    change: str | None = None  # live: what reconcile would do: grant | revoke | None


@dataclass
class StudentAccess:
    rows: list[AccessRow] = field(default_factory=list)
    world: StudentWorld | None = None  # the live read, when asked for


def student_id_of(session: Session, email: str) -> int | None:
    return session.scalar(select(Student.id).where(Student.email == email_key(email)))


def is_students_event(session: Session, email: str, event_id: int) -> bool:
    """Is ``event_id`` one of the student's events (theirs by id or by e-mail, as their timeline lists them)?"""
    key = email_key(email)
    student_id = student_id_of(session, key)
    if student_id is None:
        return False
    mine = or_(Event.student_id == student_id, Event.email == key)
    return session.scalar(select(Event.id).where(Event.id == event_id, mine)) is not None


def student_access(rt: Runtime, rules: Rules, email: str, *, live: bool = False) -> StudentAccess | None:
    """The access rows of the student with ``email`` (None if unknown); ``live`` also reads what
    Discord, ManyChat and the classes hold now and what reconcile would change (connectors called)."""
    with rt.sessions() as session:
        student_id = student_id_of(session, email)
        if student_id is None:
            return None
        views = load_students(session, [student_id])
        ledger = {
            (grant.membership_id, grant.kind, grant.resource): grant.applied
            for grant in session.scalars(select(Grant).where(Grant.student_id == student_id))
        }
    if not views:
        return StudentAccess()  # no membership: no access
    world = compute_student(rt, student_id, rules) if live else None
    view = world.view if world else views[0]
    return StudentAccess(_rows(view, derive(rules), ledger, world), world)


def reconcile_one(
    rt: Runtime, email: str, *, actor: str, note: str | None, confirm: bool = False, grants_only: bool = False
) -> Applied:
    """Reconcile the student with ``email`` alone (see :func:`engine.reconcile.student.reconcile_student`):
    raises LookupError when unknown or without a membership, :class:`Busy` while another reconcile runs."""
    with rt.sessions() as session:
        student_id = student_id_of(session, email)
    if student_id is None:
        raise LookupError(f"student {email_key(email)} not found")
    _, applied = reconcile_student(rt, student_id, actor=actor, note=note, confirm=confirm, grants_only=grants_only)
    return applied


def _rows(
    view: StudentView,
    access: dict[str, ProductAccess],
    ledger: dict[tuple[int, str, str], bool],
    world: StudentWorld | None,
) -> list[AccessRow]:
    must, may = desired(view, access)
    linked = view.discord_id is not None
    granted_any = {resource for resource, owners in view.owned.items() if owners}
    changes: dict[tuple[int, str, str], str] = {}
    if world is not None:
        for verb, items in (("grant", world.report.diff.grants), ("revoke", world.report.diff.revokes)):
            for change in items:
                changes[(change.membership_id, change.kind, change.resource)] = verb
    rows = []
    for membership in view.memberships:
        product = access.get(membership.product)
        resources = {resource for resource, owners in view.owned.items() if membership.id in owners}
        if product is not None:
            resources |= product_resources(product.product)
        now = product.of(membership.state, linked) if product else None
        for kind, resource in sorted(resources, key=lambda r: (KINDS.index(r[0]) if r[0] in KINDS else 9, r[1])):
            key = (membership.id, kind, resource)
            grant = ledger.get(key)
            difference = None
            if (kind, resource) in must and (kind, resource) not in granted_any:
                difference = NOT_GRANTED
            elif grant is not None and (kind, resource) not in may:
                difference = NOT_ALLOWED
            rows.append(
                AccessRow(
                    product=membership.product,
                    membership_id=membership.id,
                    kind=kind,
                    resource=resource,
                    wanted=_wanted((kind, resource), now),
                    granted="no" if grant is None else "applied" if grant else "pending",
                    difference=difference,
                    held=world.held_now(kind, resource) if world else None,
                    change=changes.get(key),
                )
            )
    return rows


def _wanted(resource: tuple[str, str], now: Access | None) -> str:
    if now is None:
        return UNKNOWN_PRODUCT
    if resource in now.must:
        return MUST
    if resource in now.may:
        return MAY
    return NO


__all__ = [
    "AccessRow",
    "Busy",
    "StudentAccess",
    "is_students_event",
    "reconcile_one",
    "student_access",
    "student_id_of",
]
