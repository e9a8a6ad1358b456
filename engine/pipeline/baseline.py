"""Where a membership's ordered history starts: the rules' initial state, or the snapshot an
import (``engine import-students``, from a file or from Hotmart) placed it in.

An imported membership has no events from before its import: the import's history row records
the state it was placed in, the access it adopted, the timers it set and whether the student was
linked. A late event's replay
(:mod:`engine.pipeline.ordering`) starts from there and leaves out the events the engine had
received before it (the import placed the membership over them); those received since are folded
in creation order, whenever they were created.

The access is read under the current rules, as the replay's own steps are: of what the import
adopted, what the state may still hold, plus all it must hold (reconcile's view of the snapshot,
so a role the rules replaced since is not given back); nothing when the import adopted nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.db.models import History, Membership, Student
from engine.lifecycle.access import Resource, derive_product
from engine.pipeline.ledger import RESOURCES
from engine.rules.actions import ACTIONS
from engine.rules.model import Product, Rules

IMPORTED = "imported"  # the history row of a placement
IMPORT_SOURCE = "import"  # the event log's source of an import's onboarding events
_RENAMED = "state_renamed"


@dataclass(frozen=True)
class Baseline:
    state: str
    at: datetime | None = None  # None: from the beginning (no import)
    grants: Mapping[str, frozenset[str]] = field(default_factory=dict)  # ledger kind -> resources
    timers: Mapping[str, str] = field(default_factory=dict)  # event type -> due (ISO 8601)

    def covers(self, received: datetime) -> bool:
        """Whether an event received then was already there when the snapshot was taken."""
        return self.at is not None and received < self.at


def product_access(product: Product) -> dict[str, set[str]]:
    """What a bare granting step gives: the product's own resources, per ledger kind."""
    return {
        use.kind: set(getattr(product, ACTIONS[name].product_resource))
        for name, use in RESOURCES.items()
        if use.grants and ACTIONS[name].product_resource
    }


def snapshot(grants: Mapping[str, set[str]], timers: Mapping[str, str]) -> dict[str, Any]:
    """The part of an import's history detail a replay starts from, besides its ``state``,
    ``adopt_access`` and ``linked`` (which :func:`engine.service.student_import.place` records)."""
    return {
        "grants": {kind: sorted(ids) for kind, ids in sorted(grants.items()) if ids},
        "timers": dict(sorted(timers.items())),
    }


def baseline(session: Session, rules: Rules, product: Product, membership: Membership | None) -> Baseline:
    """The membership's starting point: its import's snapshot, under the state's current name."""
    initial = rules.initial
    if membership is None:
        return Baseline(initial)
    rows = session.scalars(
        select(History)
        .where(History.membership_id == membership.id, History.kind.in_((IMPORTED, _RENAMED)))
        .order_by(History.id)
    ).all()
    imported = next((row for row in rows if row.kind == IMPORTED), None)
    if imported is None:
        return Baseline(initial)
    detail = imported.detail or {}
    state = detail.get("state") or initial
    for row in rows:
        renamed = row.detail or {}
        if row.kind == _RENAMED and row.id > imported.id and renamed.get("from") == state:
            state = renamed.get("to") or state
    if state not in rules.states:  # a name these rules lost without a rename: nothing to start from
        return Baseline(initial)
    if "linked" in detail:
        linked = bool(detail["linked"])
    else:  # recorded before the snapshot was
        linked = session.scalar(select(Student.discord_id).where(Student.id == membership.student_id)) is not None
    held = _held(rules, product, detail, state, linked) if detail.get("adopt_access") else set()
    grants: dict[str, set[str]] = {}
    for kind, resource in held:
        grants.setdefault(kind, set()).add(resource)
    return Baseline(
        state,
        imported.created_at,
        {kind: frozenset(ids) for kind, ids in grants.items()},
        dict(detail.get("timers") or {}),
    )


def _held(rules: Rules, product: Product, detail: dict[str, Any], state: str, linked: bool) -> set[Resource]:
    # Recorded before the snapshot was: what an adopting import recorded then.
    adopted = detail["grants"] if "grants" in detail else product_access(product)
    access = derive_product(rules, product).of(state, linked)
    recorded = {(kind, str(resource)) for kind, ids in adopted.items() for resource in ids}
    return (recorded & access.may) | access.must
