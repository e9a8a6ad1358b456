"""``POST /admin/students/{email}/code``: send a student a new /registrar code for one product.

The code is not made here: a ``CODE_REQUESTED`` event asks the rules, whose steps issue it and
send it (the old one stops working), as for any other event.
"""

from __future__ import annotations

from sqlalchemy import select

from engine.db.models import Membership, Student
from engine.pipeline.intake import store_internal
from engine.pipeline.runtime import Runtime


def request_code(rt: Runtime, email: str, product_key: str) -> int:
    """Ask the rules for a new /registrar code for one membership (CODE_REQUESTED)."""
    email = email.strip().lower()
    if product_key not in rt.rules.rules.products:
        raise LookupError(f"product {product_key!r} is not defined in the rules")
    with rt.sessions.begin() as session:
        student = session.scalar(select(Student).where(Student.email == email))
        if student is None:
            raise LookupError(f"student {email} not found")
        membership = session.scalar(
            select(Membership).where(Membership.student_id == student.id, Membership.product_key == product_key)
        )
        if membership is None:
            raise LookupError(f"{email} has no {product_key} membership")
        stored = store_internal(
            session, "CODE_REQUESTED", email=email, student_id=student.id, product_key=product_key, source="admin"
        )
    rt.queue.enqueue(stored.event_id, urgent=True)  # the admin (and the student) are waiting for it
    return stored.event_id
