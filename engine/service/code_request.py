"""``POST /admin/students/{email}/code``: send a student a new /registrar code for one product.

The code is not made here: a ``CODE_REQUESTED`` event asks the rules, whose steps issue it and
send it (the old one stops working), as for any other event. :func:`code_request_preview` is
the plan the current rules would make for it, with nothing stored and no code drawn.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.db.models import Membership, Student
from engine.lifecycle.planner import Facts, Plan
from engine.pipeline.history import record_history
from engine.pipeline.intake import store_internal
from engine.pipeline.runtime import Runtime

CODE_REQUESTED = "CODE_REQUESTED"


def request_code(
    rt: Runtime, email: str, product_key: str, *, actor: str | None = None, note: str | None = None
) -> int:
    """Ask the rules for a new /registrar code for one membership (CODE_REQUESTED).

    With an ``actor`` (the admin page's operator), the request is written to the student's
    history with the ``note``; the API and the CLI leave it to the event itself."""
    email = email.strip().lower()
    if product_key not in rt.rules.rules.products:
        raise LookupError(f"product {product_key!r} is not defined in the rules")
    with rt.sessions.begin() as session:
        student, membership = _membership(session, email, product_key)
        stored = store_internal(
            session, CODE_REQUESTED, email=email, student_id=student.id, product_key=product_key, source="admin"
        )
        if actor is not None:
            record_history(
                session,
                kind="code_requested",
                at=rt.now(),
                student_id=student.id,
                membership_id=membership.id,
                event_id=stored.event_id,
                actor=actor,
                detail={"product": product_key, **({"note": note} if note else {})},
            )
    rt.queue.enqueue(stored.event_id, urgent=True)  # the admin (and the student) are waiting for it
    return stored.event_id


def code_request_preview(rt: Runtime, email: str, product_key: str) -> Plan:
    """What the current rules would do with a CODE_REQUESTED for this membership now: the
    transition and its steps (the code stays ``{token}``), or why it would be ignored."""
    email = email.strip().lower()
    rules = rt.rules.rules
    product = rules.products.get(product_key)
    if product is None:
        raise LookupError(f"product {product_key!r} is not defined in the rules")
    with rt.sessions() as session:
        student, membership = _membership(session, email, product_key)
        facts = Facts(
            now=rt.now(),
            discord_linked=student.discord_id is not None,
            discord_id=student.discord_id,
            email=student.email,
            name=student.name,
        )
        return rt.rules.planner.plan(CODE_REQUESTED, {}, product, membership.state, facts)


def _membership(session: Session, email: str, product_key: str) -> tuple[Student, Membership]:
    student = session.scalar(select(Student).where(Student.email == email))
    if student is None:
        raise LookupError(f"student {email} not found")
    membership = session.scalar(
        select(Membership).where(Membership.student_id == student.id, Membership.product_key == product_key)
    )
    if membership is None:
        raise LookupError(f"{email} has no {product_key} membership")
    return student, membership
