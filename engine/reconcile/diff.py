"""Desired vs actual, per student: what is missing, what the engine granted and must take back.

Desired comes from the rules alone (:mod:`engine.lifecycle.access`): per membership, ``must`` (every
history the rules allow holds it) and ``may`` (some history may hold it); a student's access
is the union over their memberships. Owned is the grant ledger: the engine revokes only what
it granted, so a role given by hand (in no ledger row) is never touched.

- missing = must - actual (roles only for linked students who are in the server);
- extra = (owned ∩ actual) - may.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from engine.lifecycle.access import ProductAccess, Resource

KINDS = ("discord_role", "manychat_tag", "class")
EXAMPLES = 5
KIND_LABEL = {"discord_role": "role", "manychat_tag": "tag", "class": "class"}


@dataclass(frozen=True)
class Change:
    """One resource to grant to, or revoke from, one student (through one of their memberships)."""

    student_id: int
    email: str
    membership_id: int
    product: str
    kind: str  # discord_role | manychat_tag | class
    resource: str

    def line(self) -> str:
        return f"{self.email}: {KIND_LABEL[self.kind]} {self.resource} ({self.product})"


ChangeKey = tuple[int, int, str, str]


def change_key(change: Change | Mapping[str, Any]) -> ChangeKey:
    """What one change is, the same in a fresh report and in a stored run's list (``asdict`` of it):
    the student, the membership, the kind and the resource."""
    if isinstance(change, Change):
        return (change.student_id, change.membership_id, change.kind, change.resource)
    return (int(change["student_id"]), int(change["membership_id"]), str(change["kind"]), str(change["resource"]))


@dataclass(frozen=True)
class Finding:
    """A student the comparison could not cover: not in the server, no ManyChat contact."""

    student_id: int
    email: str
    product: str
    detail: str = ""

    def line(self) -> str:
        return f"{self.email} ({self.product}){': ' + self.detail if self.detail else ''}"


@dataclass
class AccessDiff:
    """What applying changes: grants (missing) and revokes (extra), and how many students were compared."""

    grants: list[Change] = field(default_factory=list)
    revokes: list[Change] = field(default_factory=list)
    students: int = 0  # the blast-radius guard's base

    @property
    def empty(self) -> bool:
        return not (self.grants or self.revokes)


@dataclass
class MembershipView:
    id: int
    product: str
    state: str


@dataclass
class StudentView:
    """One student as reconcile sees them: memberships, what the ledger says the engine granted, what they hold."""

    id: int
    email: str
    discord_id: str | None
    manychat_subscriber_id: str | None
    memberships: list[MembershipView]
    owned: dict[Resource, list[int]] = field(default_factory=dict)  # resource -> owning membership ids
    actual: dict[str, set[str] | None] = field(default_factory=dict)  # kind -> resources held; None: unknown


@dataclass
class Report:
    diff: AccessDiff
    not_in_server: list[Finding] = field(default_factory=list)
    subscribers_not_found: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what could not be compared, and why
    checked: list[str] = field(default_factory=list)  # kinds compared

    @property
    def students(self) -> int:
        return self.diff.students

    def counts(self) -> dict[str, dict[str, int]]:
        """Per product: missing, extra, not_in_server, subscribers_not_found."""
        counts: dict[str, dict[str, int]] = defaultdict(
            lambda: {"missing": 0, "extra": 0, "not_in_server": 0, "subscribers_not_found": 0}
        )
        for name, items in (
            ("missing", self.diff.grants),
            ("extra", self.diff.revokes),
            ("not_in_server", self.not_in_server),
            ("subscribers_not_found", self.subscribers_not_found),
        ):
            for item in items:
                counts[item.product][name] += 1
        return dict(sorted(counts.items()))

    def to_dict(self, limit: int | None = None) -> dict[str, Any]:
        """The whole report; ``limit`` caps each list (a stored run keeps the first ``limit``)."""

        def listed(items: list) -> list[dict[str, Any]]:
            return [asdict(item) for item in (items if limit is None else items[:limit])]

        return {
            "students": self.students,
            "checked": self.checked,
            "notes": self.notes,
            "counts": self.counts(),
            "totals": {
                "missing": len(self.diff.grants),
                "extra": len(self.diff.revokes),
                "not_in_server": len(self.not_in_server),
                "subscribers_not_found": len(self.subscribers_not_found),
            },
            "missing": listed(self.diff.grants),
            "extra": listed(self.diff.revokes),
            "not_in_server": listed(self.not_in_server),
            "subscribers_not_found": listed(self.subscribers_not_found),
        }

    def summary(self) -> list[str]:
        lines = [f"{self.students} student(s) compared ({', '.join(self.checked) or 'nothing'})"]
        lines += [f"note: {note}" for note in self.notes]
        counts = self.counts()
        if not counts:
            lines.append("no difference: the world matches the rules")
            return lines
        header = ("product", "missing", "extra", "not in server", "no ManyChat contact")
        rows = [
            (p, str(c["missing"]), str(c["extra"]), str(c["not_in_server"]), str(c["subscribers_not_found"]))
            for p, c in counts.items()
        ]
        widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
        for row in (header, *rows):
            lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        for title, items in (
            ("missing", self.diff.grants),
            ("extra (granted by the engine, no longer allowed)", self.diff.revokes),
            ("not in the Discord server", self.not_in_server),
            ("no ManyChat contact", self.subscribers_not_found),
        ):
            if items:
                lines.append(f"{title}: {len(items)}")
                lines += [f"  {item.line()}" for item in items[:EXAMPLES]]
                if len(items) > EXAMPLES:
                    lines.append(f"  ... and {len(items) - EXAMPLES} more (--json for all)")
        return lines


def desired(student: StudentView, access: dict[str, ProductAccess]) -> tuple[dict[Resource, MembershipView], set]:
    """(must resource -> the first membership that grants it, may) for one student: the union of their memberships."""
    linked = student.discord_id is not None
    must: dict[Resource, MembershipView] = {}
    may: set[Resource] = set()
    for membership in student.memberships:
        product = access.get(membership.product)
        if product is None:
            # A product the rules dropped: undecided until it is moved; keep what it granted.
            may.update(resource for resource, owners in student.owned.items() if membership.id in owners)
            continue
        held = product.of(membership.state, linked)
        for resource in sorted(held.must):
            must.setdefault(resource, membership)
        may |= held.may | held.must
    return must, may


def diff_student(student: StudentView, access: dict[str, ProductAccess], report: Report) -> None:
    """Add one student's missing and extra access (and what could not be compared) to ``report``."""
    must, may = desired(student, access)
    by_product = {m.id: m.product for m in student.memberships}
    for kind in report.checked:
        actual = student.actual.get(kind)
        wanted = {resource: m for (k, resource), m in must.items() if k == kind}
        owned = {resource: owners for (k, resource), owners in student.owned.items() if k == kind}
        if actual is None:
            _unknown(student, kind, wanted, owned, by_product, report)
            continue
        for resource, membership in sorted(wanted.items()):
            if resource not in actual:
                report.diff.grants.append(
                    Change(student.id, student.email, membership.id, membership.product, kind, resource)
                )
        for resource, owners in sorted(owned.items()):
            if resource in actual and (kind, resource) not in may:
                # Every owning membership gets its remove step: the ledger lets the last one act.
                for owner in sorted(owners):
                    report.diff.revokes.append(
                        Change(student.id, student.email, owner, by_product.get(owner, "?"), kind, resource)
                    )


def _unknown(
    student: StudentView,
    kind: str,
    wanted: dict[str, MembershipView],
    owned: dict[str, list[int]],
    by_product: dict[int, str],
    report: Report,
) -> None:
    """A student whose holdings of ``kind`` are unknown: say why, when they matter."""
    if not wanted and not owned:
        return
    product = next(iter(wanted.values())).product if wanted else by_product.get(next(iter(owned.values()))[0], "?")
    if kind == "discord_role" and student.discord_id is not None:
        report.not_in_server.append(Finding(student.id, student.email, product, f"Discord user {student.discord_id}"))
    elif kind == "manychat_tag":
        report.subscribers_not_found.append(Finding(student.id, student.email, product))


def unclaimed_classes(
    students: list[StudentView], access: dict[str, ProductAccess], strangers: Mapping[str, list[str]]
) -> list[str]:
    """Notes on the course platform's enrollments that the engine did not give and the rules do not
    allow (someone enrolled the student by hand), and on those of people the comparison does not
    know (``strangers``, per class): reported, never removed (the engine revokes only what it gave)."""
    unclaimed: dict[str, list[str]] = defaultdict(list)
    for key, emails in strangers.items():
        unclaimed[key] += emails
    for student in students:
        held = student.actual.get("class") or set()
        if not held:
            continue
        _, may = desired(student, access)
        for key in held:
            if ("class", key) not in may and ("class", key) not in student.owned:
                unclaimed[key].append(student.email)
    notes = []
    for key, emails in sorted(unclaimed.items()):
        shown = ", ".join(sorted(emails)[:EXAMPLES]) + (
            f" and {len(emails) - EXAMPLES} more" if len(emails) > EXAMPLES else ""
        )
        notes.append(
            f"class {key}: {len(emails)} enrollment(s) on the course platform that the engine did not give "
            f"and the rules do not allow, left as they are: {shown}"
        )
    return notes
