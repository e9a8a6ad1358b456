"""Response models of the course platform's read API (``/api/v1/classes``), so ``/docs`` documents
every shape. An enrollment carries the same fields as the ``class.enrollment.*`` webhooks' ``data``
(docs/operations/course-platform.md), so one receiver handles both."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class ClassOut(BaseModel):
    key: str = Field(description="The class, as rules/catalog.yaml names it (e.g. curso-2026).")
    name: str
    enrollments: int = Field(description="Students enrolled now (removals not counted).")


class ClassList(BaseModel):
    items: list[ClassOut] = Field(description="Every class the rules' catalog names or the engine enrolled in, by key.")


class EnrollmentChange(BaseModel):
    """One student's enrollment in the class as it is after its latest change: enrolled, or removed
    (a tombstone: ``removed`` true)."""

    class_key: str
    student_id: int = Field(description="The engine's id of the student.")
    email: str = Field(description="The buyer's e-mail (the key a platform usually matches on).")
    name: str | None
    discord_id: str | None = Field(description="The linked Discord account, or null.")
    product: str | None = Field(
        description="The product whose step made this change (null for an enrollment older than the read API)."
    )
    membership_state: str | None = Field(description="That product's membership state now (active, refunded ...).")
    enrolled_at: datetime = Field(description="When the current (or, removed, the last) enrollment began.")
    removed: bool = Field(description="true: no longer enrolled (a removal, kept as a tombstone).")
    removed_at: datetime | None
    changed_at: datetime = Field(description="When this change was made; the page's order (then by an inner id).")


class EnrollmentPage(BaseModel):
    class_key: str
    items: list[EnrollmentChange] = Field(description="The class's changes after the position asked for, oldest first.")
    next_cursor: str = Field(
        description="Where this page ends: pass it as `cursor` for the next page, or store it and poll with it "
        "later (always set, also on an empty page)."
    )
    has_more: bool = Field(description="More changes follow now: ask again at once with next_cursor.")
