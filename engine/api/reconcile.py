"""``GET /admin/reconcile/runs``: the stored ``engine reconcile`` runs, newest first."""

from __future__ import annotations

from fastapi import APIRouter

from engine.api.deps import ADMIN_RESPONSES, AdminDep, Offset, RunsLimit, SessionDep
from engine.service import schemas
from engine.service.reconcile_runs import run_page

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
    limit: RunsLimit = 20,
    offset: Offset = 0,
) -> schemas.ReconcileRunPage:
    return schemas.ReconcileRunPage.model_validate(run_page(session, limit=limit, offset=offset), from_attributes=True)
