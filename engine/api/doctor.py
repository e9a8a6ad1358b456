"""``GET /admin/doctor``: the preflight of ``engine doctor``, for dashboards and scripts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool

from engine.api.deps import ADMIN_RESPONSES, AdminDep, RuntimeDep
from engine.doctor import as_dicts, failed, preflight
from engine.service import schemas

router = APIRouter(prefix="/admin", tags=["admin"])


@router.get(
    "/doctor",
    summary="Preflight: database, migrations, queue, secrets, rules, and Discord/ManyChat/course platform/Hotmart API",
    response_model=schemas.DoctorReport,
    responses=ADMIN_RESPONSES,
)
async def doctor(
    _: AdminDep,
    rt: RuntimeDep,
    discord: Annotated[bool | None, Query(description="Check Discord (default: when DISCORD_ENABLED).")] = None,
    manychat: Annotated[bool | None, Query(description="Check ManyChat (default: when MANYCHAT_ENABLED).")] = None,
    course: Annotated[
        bool | None, Query(description="Check the course platform's webhook (default: when COURSE_WEBHOOK_ENABLED).")
    ] = None,
    hotmart: Annotated[
        bool | None, Query(description="Check the Hotmart API credentials (default: when HOTMART_SYNC_ENABLED).")
    ] = None,
) -> schemas.DoctorReport:
    # The rules in use (the last valid ones) are checked against the services; invalid rules on
    # disk are a FAIL of their own.
    rules = rt.rules.rules if rt.rules.available else None  # a process may run without valid rules
    checks = await run_in_threadpool(
        preflight,
        rt.settings,
        rules,
        list(rt.rules.last_problems),
        discord=discord,
        manychat=manychat,
        course=course,
        hotmart=hotmart,
    )
    return schemas.DoctorReport(ok=not failed(checks), checks=as_dicts(checks))
