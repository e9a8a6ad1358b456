"""The course platform's read API: ``GET /api/v1/classes`` and ``GET /api/v1/classes/{key}/enrollments``.

For a platform that prefers polling to the class webhooks: ``Authorization: Bearer
$COURSE_API_TOKEN``, a read-only token of its own (the admin token does not open these routes, and
this one opens nothing else). The enrollments are a feed of changes, removals included, paged with
an opaque cursor (engine.service.classes).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, status

from engine.api.deps import COURSE_RESPONSES, CourseTokenDep, RuntimeDep, SessionDep
from engine.service import classes
from engine.service.class_schemas import ClassList, EnrollmentPage
from engine.service.schemas import PRINTABLE, QueryDate

router = APIRouter(prefix="/api/v1", tags=["classes"])

MAX_LIMIT = 500


def _catalog(rt: RuntimeDep) -> dict[str, str]:
    """The rules' classes (key -> name); none while no valid rules are loaded (the table still answers)."""
    return dict(rt.rules.rules.classes) if rt.rules.available else {}


@router.get(
    "/classes",
    summary="Every class and how many students are enrolled now",
    response_model=ClassList,
    responses=COURSE_RESPONSES,
)
def list_classes(_: CourseTokenDep, rt: RuntimeDep, session: SessionDep) -> ClassList:
    return classes.class_list(session, _catalog(rt))


@router.get(
    "/classes/{key}/enrollments",
    summary="A class's enrollments as changes, oldest first, removals included: mirror a class by polling",
    description="Start with no `cursor` (every change) or with `since`; then pass each page's `next_cursor` "
    "back as `cursor`, at once while `has_more`, later to poll. A change is never skipped nor repeated; a "
    "student enrolled again after a removal comes again with `removed: false`.",
    response_model=EnrollmentPage,
    responses={**COURSE_RESPONSES, 404: {"description": "no such class"}},
)
def class_enrollments(
    _: CourseTokenDep,
    rt: RuntimeDep,
    session: SessionDep,
    key: Annotated[
        str,
        Path(
            description="The class's key (GET /api/v1/classes).",
            pattern=PRINTABLE,
            min_length=1,
            max_length=100,
            examples=["curso-2026"],
        ),
    ],
    since: Annotated[
        QueryDate,
        Query(description="Changes at or after this time (ISO 8601; no zone = UTC). Ignored with a cursor."),
    ] = None,
    cursor: Annotated[
        str | None,
        Query(description="A previous page's next_cursor: the changes after it.", pattern=classes.CURSOR_PATTERN),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"Page size (max {MAX_LIMIT}).")] = 100,
) -> EnrollmentPage:
    after = classes.Position.from_cursor(cursor) if cursor else classes.Position.start(since)
    page = classes.enrollment_page(session, key, _catalog(rt), after=after, limit=limit)
    if page is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"class {key!r} not found")
    return page
