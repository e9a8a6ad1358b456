"""What the admin page's stored runs share (reconcile, the Hotmart sync): a page of them, the
guard's refusal of an apply nobody confirmed, and the history row an apply writes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

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


class Reviewed(Protocol):
    """What applying a stored run would do, as the operator read it before (reconcile's
    ``ApplyPreview``, the sync's ``SyncPreview``)."""

    @property
    def run_id(self) -> int: ...

    @property
    def grants_only(self) -> bool: ...


def apply_mode(preview: Reviewed) -> str:
    """The mode an apply runs in: the grants only, or everything behind the guard."""
    return "grants" if preview.grants_only else "all"


def record_apply(
    rt: Runtime,
    action: str,
    preview: Reviewed,
    *,
    run_id: int,
    confirm: bool,
    operator: str,
    note: str | None,
    applied: dict[str, Any] | None,
) -> None:
    """The history row of an apply from the page: the new run, the stored one the operator read
    (``preview``), and what the new run applied (None: there was nothing to)."""
    with rt.sessions() as session:
        audit.record(
            session,
            operator,
            action,
            at=rt.now(),
            note=note,
            detail={
                "run_id": run_id,
                "reviewed_run_id": preview.run_id,
                "mode": apply_mode(preview),
                "confirm": confirm,
                **(applied if applied is not None else {"nothing_to_apply": True}),
            },
        )


__all__ = ["PAGE_TRIGGER", "ConfirmationRequired", "Reviewed", "RunPage", "apply_mode", "record_apply"]
