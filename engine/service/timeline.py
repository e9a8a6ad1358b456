"""``engine student EMAIL``: everything that happened to one student, in time order.

Events with their status and reason, the transitions their plans applied, each step and
its result, grants, timers, alerts and history entries (replays, renames, imports). Codes
and configured secrets never appear (:class:`engine.service.redaction.Redactor`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, selectinload

from engine.db.models import (
    Alert,
    Event,
    Grant,
    History,
    Membership,
    ScheduledEvent,
    Student,
)
from engine.service.redaction import Redactor, student_codes
from engine.service.students import email_key
from engine.settings import Settings

Redact = Callable[[Any], Any]
# Same instant: an event before its transition, before its steps and what they produced.
_ORDER = {"event": 0, "transition": 1, "timer": 2, "step": 3, "grant": 4, "alert": 5, "history": 6}


@dataclass(frozen=True)
class Entry:
    at: datetime
    kind: str  # event | transition | step | grant | timer | alert | history
    text: str
    event_id: int | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "kind": self.kind, "event_id": self.event_id, "text": self.text, **self.data}


@dataclass
class Timeline:
    student: Student
    memberships: list[Membership]
    entries: list[Entry]

    def to_dict(self) -> dict[str, Any]:
        s = self.student
        return {
            "student": {
                "id": s.id,
                "email": s.email,
                "name": s.name,
                "phone": s.phone,
                "discord_id": s.discord_id,
                "created_at": s.created_at.isoformat(),
            },
            "memberships": [
                {
                    "id": m.id,
                    "product": m.product_key,
                    "state": m.state,
                    "since": m.state_changed_at.isoformat(),
                    "paid_until": m.paid_until.isoformat() if m.paid_until else None,
                }
                for m in self.memberships
            ],
            "timeline": [entry.to_dict() for entry in self.entries],
        }

    def lines(self) -> list[str]:
        s = self.student
        discord = f"Discord {s.discord_id}" if s.discord_id else "Discord not linked"
        lines = [f"student     {s.email}" + (f"  {s.name}" if s.name else "") + f"  ({discord})"]
        for m in self.memberships:
            lines.append(f"membership  {m.product_key}: {m.state} since {_when(m.state_changed_at)}")
        width = max((len(e.kind) for e in self.entries), default=0)
        for entry in self.entries:
            lines.append(f"{_when(entry.at)}  {entry.kind:<{width}}  {entry.text}")
        lines.append(f"{len(self.entries)} entries")
        return lines


def _when(at: datetime) -> str:
    return f"{at:%Y-%m-%d %H:%M:%S}"


def student_timeline(session: Session, email: str, settings: Settings) -> Timeline | None:
    """The whole timeline of the student with ``email`` (any case), or None."""
    student = session.scalar(
        select(Student).options(selectinload(Student.memberships)).where(Student.email == email_key(email))
    )
    if student is None:
        return None
    redact = Redactor.for_settings(settings, student_codes(session, [student.id]))
    products = {m.id: m.product_key for m in student.memberships}
    events = session.scalars(
        select(Event)
        .options(selectinload(Event.action_runs))
        .where(or_(Event.student_id == student.id, Event.email == student.email))
        .order_by(Event.id)
    ).all()
    entries: list[Entry] = []
    for event in events:
        entries += _event_entries(event, redact)
    entries += _grants(session, student, products)
    entries += _timers(session, student, products)
    entries += _alerts(session, student, [event.id for event in events], redact)
    entries += _history(session, student, products, redact)
    entries.sort(key=lambda e: (e.at, e.event_id or 0, _ORDER[e.kind]))
    return Timeline(student, list(student.memberships), entries)


def _event_entries(event: Event, redact: Redact) -> list[Entry]:
    text = f"#{event.id} {event.type or '(no type)'} ({event.source}) {event.status}"
    if event.product_key:
        text += f" [{event.product_key}]"
    if event.reason:
        text += f": {redact(' '.join(event.reason.split()))}"
    entries = [Entry(event.received_at, "event", text, event.id, {"status": event.status, "type": event.type})]
    runs = list(event.action_runs)
    # The plan was stored when its steps were; with no step, when the event was done.
    planned_at = min((run.created_at for run in runs), default=event.processed_at or event.received_at)
    for plan in event.plans if isinstance(event.plans, list) else []:
        if not isinstance(plan, dict) or plan.get("ignored_reason"):
            continue  # an ignored plan changed nothing; the event's reason says why
        moved = f"{plan.get('from_state')} -> {plan.get('to_state')}"
        entries.append(
            Entry(
                planned_at,
                "transition",
                f"{plan.get('product')}: {moved} ({plan.get('transition')}, event #{event.id})",
                event.id,
                {
                    "product": plan.get("product"),
                    "from_state": plan.get("from_state"),
                    "to_state": plan.get("to_state"),
                    "transition": plan.get("transition"),
                },
            )
        )
    for run in runs:
        result = run.status + (f" {run.error}" if run.error else "") + (f": {run.detail}" if run.detail else "")
        params = ", ".join(f"{k}={v!r}" for k, v in redact(run.params or {}).items())
        entries.append(
            Entry(
                run.finished_at or run.started_at or run.created_at,
                "step",
                redact(f"#{event.id}.{run.step_index + 1} {run.action}({params}) -> {' '.join(result.split())}"),
                event.id,
                {"action": run.action, "status": run.status, "error": run.error, "attempts": run.attempts},
            )
        )
    return entries


def _grants(session: Session, student: Student, products: dict[int, str]) -> list[Entry]:
    grants = session.scalars(select(Grant).where(Grant.student_id == student.id).order_by(Grant.id)).all()
    return [
        Entry(
            g.created_at,
            "grant",
            f"{products.get(g.membership_id)}: {g.kind} {g.resource}"
            + ("" if g.applied else " (wanted, not applied yet)"),
            data={"product": products.get(g.membership_id), "resource_kind": g.kind, "resource": g.resource},
        )
        for g in grants
    ]


def _timers(session: Session, student: Student, products: dict[int, str]) -> list[Entry]:
    timers = session.scalars(
        select(ScheduledEvent)
        .join(Membership, ScheduledEvent.membership_id == Membership.id)
        .where(Membership.student_id == student.id)
        .order_by(ScheduledEvent.id)
    ).all()
    entries = []
    for t in timers:
        status = t.status + (f" as event #{t.fired_event_id}" if t.fired_event_id else "")
        entries.append(
            Entry(
                t.created_at,
                "timer",
                f"{products.get(t.membership_id)}: {t.event_type} due {_when(t.due_at)} ({status})",
                t.created_by_event_id,
                {"event": t.event_type, "due_at": t.due_at.isoformat(), "status": t.status},
            )
        )
    return entries


def _alerts(session: Session, student: Student, event_ids: list[int], redact: Redact) -> list[Entry]:
    mine = Alert.student_id == student.id
    if event_ids:
        mine = or_(mine, Alert.event_id.in_(event_ids))
    alerts = session.scalars(select(Alert).where(mine).order_by(Alert.id)).all()
    return [
        Entry(
            a.created_at,
            "alert",
            f"[{a.kind}] {redact(' '.join(a.message.split()))}" + (" (acknowledged)" if a.acknowledged_at else ""),
            a.event_id,
            {"alert_id": a.id, "alert_kind": a.kind},
        )
        for a in alerts
    ]


def _history(session: Session, student: Student, products: dict[int, str], redact: Redact) -> list[Entry]:
    rows = session.scalars(select(History).where(History.student_id == student.id).order_by(History.id)).all()
    entries = []
    for h in rows:
        detail = h.detail or {}
        if h.kind == "state_renamed":
            text = f"{products.get(h.membership_id)}: state renamed {detail.get('from')} -> {detail.get('to')}"
        elif h.kind == "imported":
            text = _imported(products.get(h.membership_id), detail)
        elif h.kind == "replay" and "previous_status" in detail:
            was, reason = detail["previous_status"], detail.get("previous_reason")
            if reason:
                was += ": " + " ".join(str(reason).split())
            text = f"event #{h.event_id} replayed (was {was})"
        else:
            described = ", ".join(f"{k}={v}" for k, v in detail.items())
            text = h.kind + (f" event #{h.event_id}" if h.event_id else "") + (f" ({described})" if described else "")
        if h.actor:
            text += f" by {h.actor}"
        if h.rules_version:
            text += f", rules {h.rules_version}"
        entries.append(
            Entry(h.created_at, "history", redact(text), h.event_id, {"history_kind": h.kind, "detail": redact(detail)})
        )
    return entries


def _imported(product: str | None, detail: dict[str, Any]) -> str:
    """``curso: imported as active from students.csv line 2 (linked; access adopted)``."""
    if detail.get("file"):
        origin = f" from {detail['file']} line {detail.get('line')}"
    elif detail.get("source"):
        origin = f" from {detail['source']} ({detail.get('hotmart_status')}, {detail.get('reference')})"
    else:
        origin = ""
    facts = []
    if "linked" in detail:  # recorded since the import's snapshot is
        facts.append("linked" if detail["linked"] else "not linked")
    if detail.get("adopt_access"):
        facts.append("access adopted")
    if detail.get("timers"):
        facts.append("timers " + ", ".join(sorted(detail["timers"])))
    return f"{product}: imported as {detail.get('state')}{origin}" + (f" ({'; '.join(facts)})" if facts else "")
