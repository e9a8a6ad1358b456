"""``GET /admin/sync/hotmart/runs``: the stored ``engine sync hotmart`` runs, newest first."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from engine.api.deps import ADMIN_RESPONSES, AdminDep, SessionDep
from engine.catchup import list_runs, run_out
from engine.service import schemas
from engine.service.schemas import MAX_ID

router = APIRouter(prefix="/admin", tags=["admin"])


@router.get(
    "/sync/hotmart/runs",
    summary="engine sync hotmart runs, newest first: the changes no webhook brought, what was stored or held",
    response_model=schemas.SyncRunPage,
    responses=ADMIN_RESPONSES,
)
def hotmart_sync_runs(
    _: AdminDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100, description="Page size (max 100).")] = 20,
    offset: Annotated[int, Query(ge=0, le=MAX_ID, description="Rows to skip.")] = 0,
) -> schemas.SyncRunPage:
    runs, total = list_runs(session, source="hotmart", limit=limit, offset=offset)
    return schemas.SyncRunPage(
        items=[schemas.SyncRunOut(**run_out(run)) for run in runs], total=total, limit=limit, offset=offset
    )
