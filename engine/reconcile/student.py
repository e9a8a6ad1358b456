"""Reconcile one student: the comparison and the apply of ``engine reconcile``, for the student an
operator is looking at (the admin page's student view).

The world is read for this student only: their Discord member (Get Guild Member, not the whole
member list), their ManyChat contact and their class enrollments (the course platform's list of
each class that matters to them when COURSE_ENROLLMENTS_URL is set, else the engine's table). The diff is
:func:`~engine.reconcile.diff.diff_student`'s and the apply :func:`~engine.reconcile.apply.apply_access_diff`'s,
behind the same blast-radius guard (``RECONCILE_MAX_REVOKES``, by default 10 revocations for one
student) and the same one-reconcile-at-a-time lock.
"""

from __future__ import annotations

from dataclasses import dataclass

from connectors.base import StudentRef
from engine.lifecycle.access import ProductAccess, derive
from engine.pipeline.history import record_history
from engine.pipeline.runtime import Runtime
from engine.reconcile.apply import Applied, apply_access_diff, revoke_limit
from engine.reconcile.diff import AccessDiff, Report, StudentView, diff_student, unclaimed_classes
from engine.reconcile.runs import exclusive
from engine.reconcile.world import (
    PLATFORM,
    class_keys,
    load_students,
    no_progress,
    read_classes,
    read_platform_classes,
)
from engine.rules.actions import granting
from engine.rules.model import Rules

# How one kind of access was read for the student. Not compared: DISABLED (the connector's flag
# is off) and FAILED (the service could not be asked); the others are compared.
READ = "read"
DISABLED = "disabled"
FAILED = "failed"
NOT_LINKED = "not_linked"  # no Discord account: holds no role
NOT_IN_SERVER = "not_in_server"  # linked, but not a member of the guild
NO_CONTACT = "no_contact"  # ManyChat knows no contact for the student
OWN_TABLE = "table"  # classes read from the engine's own table (the course platform's list is not read)
_NOT_COMPARED = (DISABLED, FAILED)


@dataclass(frozen=True)
class KindRead:
    kind: str  # discord_role | manychat_tag | class
    status: str
    detail: str = ""  # the service's error, when FAILED


@dataclass
class StudentWorld:
    """One student's access as reconcile sees it: the view (memberships, ledger, what they hold now),
    the diff against the rules, and how each kind was read."""

    view: StudentView
    report: Report
    reads: list[KindRead]
    revoke_limit: int  # revocations applied without confirmation

    @property
    def over_guard(self) -> bool:
        return len(self.report.diff.revokes) > self.revoke_limit

    def held_now(self, kind: str, resource: str) -> bool | None:
        """Does the student hold it now? None: not known (not compared, not in the server, no contact)."""
        actual = self.view.actual.get(kind)
        if kind not in self.report.checked or actual is None:
            return None
        return resource in actual


def compute_student(rt: Runtime, student_id: int, rules: Rules | None = None) -> StudentWorld | None:
    """Compare one student's access with what the rules want. Reads only; None when the student
    has no membership (nothing to compare)."""
    rules = rules or rt.rules.rules
    access = derive(rules)
    with rt.sessions() as session:
        views = load_students(session, [student_id])
        if not views:
            return None
        read_classes(session, views, [student_id])
    view = views[0]
    classes = _read_classes(rt, view, access)
    reads = [_read_discord(rt, view), _read_manychat(rt, view), classes]
    report = Report(AccessDiff(students=1))
    report.checked = [read.kind for read in reads if read.status not in _NOT_COMPARED]
    unknown = sorted({m.product for m in view.memberships if m.product not in access})
    if unknown:
        report.notes.append(f"products no longer in the rules (their grants are kept): {', '.join(unknown)}")
    diff_student(view, access, report)
    if classes.status == READ:
        report.notes += unclaimed_classes([view], access, {})
    return StudentWorld(view, report, reads, revoke_limit(1, rt.settings.reconcile_max_revokes))


def reconcile_student(
    rt: Runtime,
    student_id: int,
    *,
    actor: str,
    note: str | None = None,
    confirm: bool = False,
    grants_only: bool = False,
) -> tuple[StudentWorld, Applied]:
    """Compare and apply for one student, as ``engine reconcile --apply`` does for everyone
    (``confirm``: past the guard; ``grants_only``: leave the revocations). Written to the student's
    history with ``actor`` and ``note``, also when there was nothing to apply or the guard held it.
    Raises :class:`~engine.reconcile.runs.Busy` while another reconcile runs, LookupError for a
    student with no membership."""
    with exclusive(rt):
        world = compute_student(rt, student_id)
        if world is None:
            raise LookupError(f"student {student_id} has no membership to reconcile")
        applied = apply_access_diff(
            rt,
            world.report.diff,
            confirm=confirm,
            max_revokes=world.revoke_limit,
            grants_only=grants_only,
            actor=actor,
            note=note,
        )
    if not applied.events:  # apply wrote no history entry: nothing to do, or held by the guard
        detail: dict = {"steps": []}
        if applied.held:
            detail.update(held=True, revokes=applied.revokes, alert_id=applied.alert_id)
        if note:
            detail["note"] = note
        with rt.sessions.begin() as session:
            record_history(session, kind="reconcile", at=rt.now(), student_id=student_id, actor=actor, detail=detail)
    return world, applied


def _read_classes(rt: Runtime, view: StudentView, access: dict[str, ProductAccess]) -> KindRead:
    """The student's classes: the platform's lists (READ) or, without COURSE_ENROLLMENTS_URL, the
    engine's table read with the view (OWN_TABLE, the reason in ``detail``)."""
    classes = read_platform_classes(rt, [view], class_keys([view], access), no_progress)
    if classes.source == PLATFORM:
        return KindRead("class", READ)
    return KindRead("class", OWN_TABLE if classes.compared else FAILED, classes.reason)


def _read_discord(rt: Runtime, view: StudentView) -> KindRead:
    kind = "discord_role"
    connector = rt.connector_for(granting(kind))
    if not hasattr(connector, "get_member"):
        return KindRead(kind, DISABLED)
    if view.discord_id is None:
        view.actual[kind] = set()  # no account holds no role
        return KindRead(kind, NOT_LINKED)
    from connectors.errors import WireError

    try:
        member = connector.get_member(view.discord_id)
    except WireError as exc:
        return KindRead(kind, FAILED, f"{exc.error}: {exc.detail}")
    if member is None:
        view.actual[kind] = None
        return KindRead(kind, NOT_IN_SERVER)
    view.actual[kind] = {str(role) for role in member.get("roles") or []}
    return KindRead(kind, READ)


def _read_manychat(rt: Runtime, view: StudentView) -> KindRead:
    kind = "manychat_tag"
    connector = rt.connector_for(granting(kind))
    if not hasattr(connector, "subscriber_tags"):
        return KindRead(kind, DISABLED)
    from connectors.errors import WireError

    try:
        subscriber = view.manychat_subscriber_id or connector.find_subscriber(StudentRef(id=view.id, email=view.email))
        tags = connector.subscriber_tags(subscriber) if subscriber else None
    except WireError as exc:
        return KindRead(kind, FAILED, f"{exc.error}: {exc.detail}")
    view.actual[kind] = tags
    return KindRead(kind, READ if tags is not None else NO_CONTACT)
