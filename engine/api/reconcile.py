"""``GET /admin/reconcile/runs``: the stored ``engine reconcile`` runs, newest first."""

from __future__ import annotations

from fastapi import APIRouter

from engine.api.deps import ADMIN_RESPONSES, AdminDep, Offset, RunsLimit, SessionDep
from engine.reconcile.runs import list_runs, run_out
from engine.service import schemas

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
    runs, total = list_runs(session, limit=limit, offset=offset)
    return schemas.ReconcileRunPage(
        items=[schemas.ReconcileRunOut(**run_out(run)) for run in runs], total=total, limit=limit, offset=offset
    )
