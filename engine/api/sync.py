"""``GET /admin/sync/hotmart/runs``: the stored ``engine sync hotmart`` runs, newest first."""

from __future__ import annotations

from fastapi import APIRouter

from engine.api.deps import ADMIN_RESPONSES, AdminDep, Offset, RunsLimit, SessionDep
from engine.service import schemas
from engine.service.sync_runs import run_page

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
    limit: RunsLimit = 20,
    offset: Offset = 0,
) -> schemas.SyncRunPage:
    return schemas.SyncRunPage.model_validate(run_page(session, limit=limit, offset=offset), from_attributes=True)
