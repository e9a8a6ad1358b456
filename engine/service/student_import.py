"""``engine import-students``: the one-time seed of the students a course already has (the owner's
migration plan, step 4).

A CSV row per membership: ``email,product,state,name,phone,discord_id`` (``state`` defaults to
the first state with access in the example, ``active``), comma- or semicolon-separated (Excel's
default in pt-BR; the dialect is sniffed). Phones are normalised as the webhook does
(``11 98888-7777`` -> ``+5511988887777``). The whole file is checked in one pass and nothing is
imported if any row is wrong, so a fixed file can simply be run again. Each imported membership
is recorded in the student's history (``imported``).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from engine.db.models import Grant, Membership, Student, utcnow
from engine.pipeline.baseline import IMPORTED, product_access, snapshot
from engine.pipeline.classes import enroll_student
from engine.pipeline.history import record_history
from engine.pipeline.ledger import RESOURCES
from engine.rules.actions import ACTIONS, CLASSES
from engine.rules.model import Rules
from engine.sources import normalize_phone

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_SNOWFLAKE = re.compile(r"^[0-9]{15,21}$")
COLUMNS = ("email", "product", "state", "name", "phone", "discord_id")
# The ledger kind of a class enrollment (the course platform's, a table of the engine's too).
_CLASS = next(use.kind for name, use in RESOURCES.items() if ACTIONS[name].executor == CLASSES)


@dataclass
class SeedRow:
    line: int
    email: str
    product: str
    state: str
    name: str | None
    phone: str | None
    discord_id: str | None


@dataclass
class Placed:
    """What :func:`place` did for one membership."""

    student: Student
    membership: Membership | None  # None: not created (already there, or refused)
    student_created: bool
    error: str | None = None
    existing: Membership | None = None  # the membership that was already there


@dataclass
class SeedReport:
    errors: list[str] = field(default_factory=list)  # "LINE: message" (the caller prefixes the file)
    students_created: int = 0
    memberships_created: int = 0
    memberships_existing: int = 0
    grants_recorded: int = 0


def _dialect(text: str) -> type[csv.Dialect] | csv.Dialect:
    try:
        return csv.Sniffer().sniff(text[:8192], delimiters=",;\t")
    except csv.Error:  # one column, or nothing to go by: the standard comma
        return csv.excel


def read_rows(
    text: str, rules: Rules, source: str = "students.csv", *, required: tuple[str, ...] = ("email", "product")
) -> tuple[list[SeedRow], list[str]]:
    """Parse and check the CSV; every problem is reported as ``source:LINE: message``.

    Rows with a problem are left out of the returned rows (every other row is still returned, so
    :func:`seed` can check them too and the file's every problem shows in one pass). A file
    without a ``product`` column (allowed when ``required`` does not name it) has its rows' product
    left empty and unchecked.
    """
    reader = csv.DictReader(io.StringIO(text), dialect=_dialect(text))
    columns = reader.fieldnames or []
    missing = [c for c in required if c not in columns]
    if missing:
        return [], [f"{source}:1: missing column(s): {', '.join(missing)} (columns: {', '.join(COLUMNS)})"]
    rows, errors, seen = [], [], {}
    for raw in reader:
        number = reader.line_num  # the row's last physical line (a quoted field may span lines)
        errors_before = len(errors)
        value = {k: (raw.get(k) or "").strip() for k in COLUMNS}
        row = SeedRow(
            number,
            value["email"].lower(),
            value["product"],
            value["state"] or "active",
            value["name"] or None,
            normalize_phone(value["phone"]) if value["phone"] else None,
            value["discord_id"] or None,
        )
        where = f"{source}:{number}:"
        if not _EMAIL.match(row.email):
            errors.append(f"{where} invalid e-mail {value['email']!r}")
        if "product" in columns and row.product not in rules.products:
            errors.append(f"{where} unknown product {row.product!r} (products: {', '.join(rules.products)})")
        if row.state not in rules.states:
            errors.append(f"{where} unknown state {row.state!r} (states: {', '.join(rules.states)})")
        if value["phone"] and row.phone is None:
            errors.append(
                f"{where} phone {value['phone']!r} is not E.164 and cannot be made so "
                "(e.g. +5511988887777, or 11 98888-7777 for Brazil)"
            )
        if row.discord_id and not _SNOWFLAKE.match(row.discord_id):
            errors.append(f"{where} discord_id {row.discord_id!r} is not a Discord id")
        key = (row.email, row.product)
        if key in seen and "product" in columns:  # a membership twice (a list of students may repeat one)
            errors.append(f"{where} {row.email} / {row.product} already on line {seen[key]}")
        seen.setdefault(key, number)
        if len(errors) == errors_before:
            rows.append(row)
    return rows, errors


def read_discord_ids(text: str, rules: Rules, source: str) -> tuple[dict[str, SeedRow], list[str]]:
    """The rows of a CSV of the import's columns (``email`` and ``discord_id`` required) by e-mail,
    for another import to join (``--discord-ids``): each student's Discord id, name and phone.
    Problems as :func:`read_rows` reports them, plus an e-mail given two Discord ids."""
    rows, errors = read_rows(text, rules, source, required=("email", "discord_id"))
    found: dict[str, SeedRow] = {}
    for row in rows:
        first = found.setdefault(row.email, row)
        if first.discord_id != row.discord_id:
            errors.append(f"{source}:{row.line}: {row.email} has discord_id {first.discord_id} on line {first.line}")
    return found, _in_line_order(errors, source)


def place(
    session: Session,
    *,
    email: str,
    product_key: str,
    state: str,
    name: str | None,
    phone: str | None,
    discord_id: str | None,
    now: datetime,
    detail: dict[str, Any],
) -> Placed:
    """The student (created, or completed with what it lacked: name, phone, Discord id) and a new
    membership of ``product_key`` in ``state``, recorded in the student's history (``imported``,
    with ``detail`` and whether the student is linked). An existing membership is left as it is;
    a Discord id that belongs to someone else is refused (``Placed.error``). Every import,
    whatever it reads, places here."""
    student = session.scalar(select(Student).where(Student.email == email))
    created = student is None
    if student is None:
        student = Student(email=email, name=name, phone=phone, created_at=now, updated_at=now)
        session.add(student)
    student.name = student.name or name
    student.phone = student.phone or phone
    if discord_id and student.discord_id != discord_id:
        owner = session.scalar(select(Student.email).where(Student.discord_id == discord_id))
        if owner and owner != email:
            return Placed(student, None, created, f"discord_id {discord_id} is linked to {owner}")
        if student.discord_id:
            return Placed(student, None, created, f"{email} is linked to another Discord account")
        student.discord_id = discord_id
    session.flush()
    membership = session.scalar(
        select(Membership).where(Membership.student_id == student.id, Membership.product_key == product_key)
    )
    if membership is not None:
        return Placed(student, None, created, existing=membership)
    membership = Membership(
        student_id=student.id,
        product_key=product_key,
        state=state,
        state_changed_at=now,
        created_at=now,
        updated_at=now,
    )
    session.add(membership)
    session.flush()
    record_history(
        session,
        kind=IMPORTED,
        at=now,
        student_id=student.id,
        membership_id=membership.id,
        actor="engine import-students",
        detail={**detail, "linked": student.discord_id is not None},
    )
    return Placed(student, membership, created)


def adopt(session: Session, rules: Rules, membership: Membership, resources: dict[str, set[str]], now: datetime) -> int:
    """Record ``resources`` (ledger kind -> ids) as granted by the engine to ``membership`` (a later
    refund or churn removes them) and enroll the student in its classes; the number of grants."""
    recorded = 0
    for kind, ids in resources.items():
        for resource in sorted(ids):
            session.add(
                Grant(
                    student_id=membership.student_id,
                    membership_id=membership.id,
                    kind=kind,
                    resource=resource,
                    applied=True,
                    created_at=now,
                )
            )
            recorded += 1
            if kind == _CLASS:
                enroll_student(
                    session,
                    membership.student_id,
                    resource,
                    rules.classes.get(resource),
                    membership_id=membership.id,
                    now=now,
                )
    return recorded


def seed(
    session: Session,
    rows: list[SeedRow],
    rules: Rules,
    *,
    adopt_access: bool,
    progress: Callable[[int], object] | None = None,
    source: str | None = None,
    now: datetime | None = None,
) -> SeedReport:
    """Create students and memberships (existing memberships are left as they are).

    ``adopt_access`` records each imported membership's roles, tags and classes in the grant
    ledger, as if the engine had granted them: a later refund or churn then removes them.
    ``progress(1)`` is called after each row (the CLI's progress bar). ``now``: the time of the
    snapshot (a later event's replay starts there); the wall clock by default.
    """
    report = SeedReport()
    now = now or utcnow()
    for row in rows:
        if progress is not None:
            progress(1)
        adopted = product_access(rules.products[row.product]) if adopt_access else {}
        placed = place(
            session,
            email=row.email,
            product_key=row.product,
            state=row.state,
            name=row.name,
            phone=row.phone,
            discord_id=row.discord_id,
            now=now,
            detail={
                "file": source,
                "line": row.line,
                "product": row.product,
                "state": row.state,
                "adopt_access": adopt_access,
                **snapshot(adopted, {}),
            },
        )
        report.students_created += placed.student_created
        if placed.error:
            report.errors.append(f"{row.line}: {placed.error}")
            continue
        if placed.membership is None:
            report.memberships_existing += 1
            continue
        report.memberships_created += 1
        report.grants_recorded += adopt(session, rules, placed.membership, adopted, now)
    return report


def import_students(
    sessions: sessionmaker[Session],
    rows: list[SeedRow],
    rules: Rules,
    *,
    file_errors: list[str],
    source: str,
    adopt_access: bool,
    dry_run: bool,
    progress: Callable[[int], object] | None = None,
) -> tuple[SeedReport, list[str]]:
    """:func:`seed` the rows that read well (``file_errors``: what :func:`read_rows` found in the
    others) in one transaction, kept only when not ``dry_run`` and no row has a problem, in the
    file or against the database, so that every problem shows at once. Returns the report and
    every problem (``source:LINE: message``) in line order."""
    with sessions() as session:
        report = seed(session, rows, rules, adopt_access=adopt_access, progress=progress, source=source)
        errors = _in_line_order([*file_errors, *(f"{source}:{error}" for error in report.errors)], source)
        if errors or dry_run:
            session.rollback()
        else:
            session.commit()
    return report, errors


def _in_line_order(errors: list[str], source: str) -> list[str]:
    line = re.compile(rf"^{re.escape(source)}:(\d+):")
    return sorted(errors, key=lambda e: int(m.group(1)) if (m := line.match(e)) else 0)
