"""What the admin page's stored runs share (reconcile, the Hotmart sync): a page of them, the
guard's refusal of an apply nobody confirmed, and the history row an apply writes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.pipeline.runtime import Runtime
from engine.service import audit

# A stored run's trigger when an operator ran it from the page (reconcile's events: actor "reconcile:page").
PAGE_TRIGGER = "page"


class ConfirmationRequired(Exception):
    """More than the guard allows would be revoked or ended, and the operator did not say they read the list."""


@dataclass(frozen=True)
class RunPage:
    items: list[dict[str, Any]]
    total: int
    limit: int
    offset: int


def record_apply(
    rt: Runtime,
    action: str,
    *,
    operator: str,
    note: str | None,
    run_id: int,
    reviewed_run_id: int,
    mode: str,
    confirm: bool,
    applied: dict[str, Any] | None,
) -> None:
    """The history row of an apply from the page: the new run, the stored one the operator read
    before, and what the new run applied (None: there was nothing to)."""
    with rt.sessions() as session:
        audit.record(
            session,
            operator,
            action,
            at=rt.now(),
            note=note,
            detail={
                "run_id": run_id,
                "reviewed_run_id": reviewed_run_id,
                "mode": mode,
                "confirm": confirm,
                **(applied if applied is not None else {"nothing_to_apply": True}),
            },
        )


__all__ = ["PAGE_TRIGGER", "ConfirmationRequired", "RunPage", "record_apply"]
