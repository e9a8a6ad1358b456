"""The grant ledger: access is a union, and we only revoke what we granted.

Before a remove step runs, its resources are narrowed to those this membership granted
and no other membership of the student still grants ("compute the diff, then apply").
A role given by hand is in no ledger row, so the engine never removes it.
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from connectors.base import Step, StepResult, StepStatus
from engine.db.models import ActionRun, Grant, Membership
from engine.rules.action_types import LedgerUse
from engine.rules.actions import ledger_uses

# action -> the ledger resource it adds or removes (declared in engine.rules.actions)
RESOURCES: dict[str, LedgerUse] = dict(ledger_uses())


def _granted(session: Session, membership: Membership, kind: str) -> tuple[set[str], set[str]]:
    """(resources this membership granted, resources the student's other memberships grant)."""
    rows = session.execute(
        select(Grant.membership_id, Grant.resource).where(Grant.student_id == membership.student_id, Grant.kind == kind)
    ).all()
    own = {resource for owner, resource in rows if owner == membership.id}
    others = {resource for owner, resource in rows if owner != membership.id}
    return own, others


def effective_step(session: Session, run: ActionRun, membership: Membership | None) -> tuple[Step, StepResult | None]:
    """The step to send, or a ready result when there is nothing to do."""
    step = Step(run.action, dict(run.params))
    use = RESOURCES.get(run.action)
    if use is None or use.grants or membership is None:
        return step, None
    kind, key = use.kind, use.param
    own, others = _granted(session, membership, kind)
    wanted = list(step.params.get(key, []))
    if "discord_id" in step.params:
        # Relink: the old account loses what this membership gave; the new one gets it next.
        keep_for_others: set[str] = set()
    else:
        keep_for_others = others
    remove = [r for r in wanted if r in own and r not in keep_for_others]
    if not remove:
        kept = [r for r in wanted if r in keep_for_others]
        reason = "nothing to remove"
        if kept:
            reason += f"; still granted by another product: {', '.join(kept)}"
        if any(r not in own for r in wanted):
            reason += "; the rest was not granted by the engine"
        return step, StepResult.done(reason)
    return Step(run.action, {**step.params, key: remove}), None


def record(session: Session, run: ActionRun, student_id: int, result: StepResult) -> None:
    """Update the ledger after a step's result."""
    use = RESOURCES.get(run.action)
    if use is None or run.membership_id is None:
        return
    kind, resources = use.kind, list(run.params.get(use.param, []))
    if use.grants:
        if result.status is StepStatus.DONE:
            applied = True
        elif result.status is StepStatus.SKIPPED and result.data.get("pending_join"):
            applied = False  # wanted; applied when the student joins the server
        else:
            return
        for resource in resources:
            grant = session.scalar(
                select(Grant).where(
                    Grant.membership_id == run.membership_id, Grant.kind == kind, Grant.resource == resource
                )
            )
            if grant is None:
                session.add(
                    Grant(
                        student_id=student_id,
                        membership_id=run.membership_id,
                        kind=kind,
                        resource=resource,
                        applied=applied,
                    )
                )
            else:
                grant.applied = applied
        return
    if result.status is StepStatus.DONE and "discord_id" not in run.params:
        session.execute(
            delete(Grant).where(
                Grant.membership_id == run.membership_id, Grant.kind == kind, Grant.resource.in_(resources)
            )
        )
