"""What the engine knows of the changes a platform shows: its event log and memberships.

A change is known when an event of it is stored, whichever way it came and whatever became of
it (held, ignored, needing attention: the event log has it; a replay is the fix, not a second
event). Events stored with a change key (every one since migration 0017) are found by it; older
ones by what they carry: a purchase's event by its transaction and type, a cancellation by the
key its stored body gives. A purchase the engine never saw an event of is known still when a
membership names its transaction (an imported student's).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.db.models import Event, Membership, Student
from engine.sources import Source
from engine.sources.base import ApiChange

_CHUNK = 500  # values per IN (...) list
_T = TypeVar("_T")


@dataclass(frozen=True)
class MembershipView:
    student_id: int
    email: str
    name: str | None
    discord_id: str | None
    product: str
    state: str
    last_event_at: datetime | None  # the newest platform event applied to it; None: none ever (imported)
    created_at: datetime | None = None
    transaction: str | None = None  # the last one applied to it


@dataclass
class Known:
    change_keys: set[str] = field(default_factory=set)
    purchase_events: set[tuple[str, str]] = field(default_factory=set)  # (transaction, event type)
    transactions: set[str] = field(default_factory=set)  # named by a membership
    newest: dict[str, datetime] = field(default_factory=dict)  # transaction -> its newest event's date
    memberships: dict[tuple[str, str], MembershipView] = field(default_factory=dict)  # (e-mail, product key)

    def knows(self, change: ApiChange, granting: frozenset[str]) -> bool:
        if change.change_key is not None and change.change_key in self.change_keys:
            return True
        if change.transaction is None:
            return False
        if (change.transaction, change.event_type) in self.purchase_events:
            return True
        # A granting change: any granting event of the purchase (its completion), or a membership
        # naming it, says the engine granted it.
        return change.event_type in granting and (
            change.transaction in self.transactions
            or any((change.transaction, other) in self.purchase_events for other in granting)
        )


def load_known(session: Session, source: Source, changes: Sequence[ApiChange]) -> Known:
    """What the engine knows of ``changes`` (five indexed reads per 500 of them)."""
    known = Known()
    keys = sorted({change.change_key for change in changes if change.change_key})
    for chunk in _chunks(keys):
        known.change_keys.update(session.scalars(select(Event.change_key).where(Event.change_key.in_(chunk))))
    transactions = sorted({change.transaction for change in changes if change.transaction})
    for chunk in _chunks(transactions):
        rows = session.execute(
            select(Event.transaction, Event.type, Event.occurred_at).where(
                Event.transaction.in_(chunk), Event.source == source.name
            )
        )
        for transaction, event_type, occurred_at in rows:
            known.purchase_events.add((transaction, event_type))
            if occurred_at is not None and (transaction not in known.newest or occurred_at > known.newest[transaction]):
                known.newest[transaction] = occurred_at
        known.transactions.update(
            session.scalars(select(Membership.transaction).where(Membership.transaction.in_(chunk)))
        )
    emails = sorted({change.email for change in changes})
    for chunk in _chunks(emails):
        rows = session.execute(
            select(
                Student.id,
                Student.email,
                Student.name,
                Student.discord_id,
                Membership.product_key,
                Membership.state,
                Membership.last_event_at,
                Membership.created_at,
                Membership.transaction,
            )
            .join(Membership, Membership.student_id == Student.id)
            .where(Student.email.in_(chunk))
        )
        for student_id, email, name, discord_id, product, state, last, created, transaction in rows:
            known.memberships[(email, product)] = MembershipView(
                student_id, email, name, discord_id, product, state, last, created, transaction
            )
    _older_keyed(session, source, changes, known)
    return known


def _older_keyed(session: Session, source: Source, changes: Sequence[ApiChange], known: Known) -> None:
    """Events stored before change keys (no key, no transaction: a cancellation): their key, read
    off their stored body, for the buyers whose such change is not found by key."""
    wanted = [
        change
        for change in changes
        if change.transaction is None and change.change_key and change.change_key not in known.change_keys
    ]
    types = sorted({change.event_type for change in wanted})
    for chunk in _chunks(sorted({change.email for change in wanted})):
        rows = session.scalars(
            select(Event.payload).where(
                Event.email.in_(chunk),
                Event.source == source.name,
                Event.type.in_(types),
                Event.change_key.is_(None),
            )
        )
        known.change_keys.update(key for key in map(source.change_key, rows) if key)


def _chunks(values: Sequence[_T]) -> Iterator[Sequence[_T]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


__all__ = ["Known", "MembershipView", "load_known"]
