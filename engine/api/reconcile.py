"""``GET /admin/reconcile/runs``: the stored ``engine reconcile`` runs, newest first."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from engine.api.deps import ADMIN_RESPONSES, AdminDep, SessionDep
from engine.reconcile.runs import list_runs, run_out
from engine.service import schemas
from engine.service.schemas import MAX_ID

router = APIRouter(prefix="/admin", tags=["admin"])


@router.get(
    "/reconcile/runs",
    summary="Reconcile runs, newest first: counts per product, the diff, what was applied or held",
    response_model=schemas.ReconcileRunPage,
    responses=ADMIN_RESPONSES,
)
def reconcile_runs(
    _: AdminDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100, description="Page size (max 100).")] = 20,
    offset: Annotated[int, Query(ge=0, le=MAX_ID, description="Rows to skip.")] = 0,
) -> schemas.ReconcileRunPage:
    runs, total = list_runs(session, limit=limit, offset=offset)
    return schemas.ReconcileRunPage(
        items=[schemas.ReconcileRunOut(**run_out(run)) for run in runs], total=total, limit=limit, offset=offset
    )
