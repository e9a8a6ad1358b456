"""Rules that fit the data they govern.

A rules change can drop a state, a product or a timer event that live memberships and
pending timers still use; nothing in the YAML shows it. :func:`check_database` compares
the two (``engine check --database``; the worker at each rules load, as an alert).
A rename is declared, never guessed: ``lifecycle.renamed_states: {old: new}`` moves the
memberships in ``old`` when a worker first loads those rules (:func:`apply_renames`),
each move recorded in the student's history.
"""

from __future__ import annotations

import logging
import posixpath
import threading
import weakref
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from engine import alert_texts
from engine.db.locks import lock_buyer_for_transaction
from engine.db.models import Membership, ScheduledEvent, Student
from engine.pipeline.alerts import raise_alert
from engine.pipeline.history import record_history
from engine.pipeline.runtime import Runtime
from engine.rules.model import Rules
from engine.statuses import TimerStatus

log = logging.getLogger(__name__)

EXAMPLES = 3
ALERT_KIND = "rules.database"
# Per rules repository (one per process): the generation of the rules last fitted.
_fitted: weakref.WeakKeyDictionary[object, int] = weakref.WeakKeyDictionary()
_fit_lock = threading.Lock()


def _plural(count: int, word: str, plural: str | None = None) -> str:
    return f"{count} {word if count == 1 else plural or word + 's'}"


def _memberships(count: int, portuguese: bool) -> str:
    return _plural(count, "matrícula") if portuguese else _plural(count, "membership")


def _timers(count: int, portuguese: bool) -> str:
    return _plural(count, "timer pendente", "timers pendentes") if portuguese else _plural(count, "pending timer")


@dataclass(frozen=True)
class Misfit:
    """Something the database uses that the rules no longer define."""

    kind: str  # "state" | "product" | "timer event"
    name: str
    memberships: int
    timers: int  # pending timers involved
    examples: tuple[str, ...]  # up to three "email (product)"
    file: str
    line: int | None

    @property
    def cause(self) -> str:
        return f"{self.kind} {self.name!r}"

    def message(self, portuguese: bool = False) -> str:
        used = []
        if self.memberships:
            used.append(_memberships(self.memberships, portuguese))
        if self.timers or not self.memberships:
            used.append(_timers(self.timers, portuguese))
        examples = ", ".join(self.examples)
        if portuguese:
            what = {"state": "o estado", "product": "o produto", "timer event": "o evento de timer"}[self.kind]
            fix = {
                "state": f"declare lifecycle.renamed_states: {{{self.name}: <novo estado>}} ou mantenha o estado",
                "product": f"restaure o arquivo dele em {self.file} (um produto com alunos não pode ser removido)",
                "timer event": "declare-o de novo em lifecycle.events (os timers o disparam)",
            }[self.kind]
            return f"{what} {self.name!r} não está definido, mas {' e '.join(used)} o usam; ex.: {examples}; {fix}"
        fix = {
            "state": f"declare lifecycle.renamed_states: {{{self.name}: <new state>}} or keep the state",
            "product": f"restore its file under {self.file} (a product with students cannot be removed)",
            "timer event": "declare it again under lifecycle.events (the timers fire it)",
        }[self.kind]
        return f"{self.cause} is not defined, but {' and '.join(used)} use it; e.g. {examples}; {fix}"

    def line_text(self, portuguese: bool = False) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.message(portuguese)}"

    def __str__(self) -> str:
        return self.line_text()


@dataclass(frozen=True)
class PendingRename:
    old: str
    new: str
    memberships: int

    def text(self, portuguese: bool = False) -> str:
        if portuguese:
            return (
                f"{_memberships(self.memberships, True)} em {self.old!r} passa(m) para {self.new!r} quando um "
                "worker carregar estas regras (renamed_states)"
            )
        return (
            f"{_memberships(self.memberships, False)} in {self.old!r} will move to {self.new!r} "
            "when a worker loads these rules (renamed_states)"
        )

    def __str__(self) -> str:
        return self.text()


@dataclass
class DatabaseFit:
    memberships: int = 0
    pending_timers: int = 0
    misfits: list[Misfit] = field(default_factory=list)
    renames: list[PendingRename] = field(default_factory=list)


def _examples(session: Session, *conditions, timers: bool = False) -> tuple[str, ...]:
    query = select(Student.email, Membership.product_key).join(Student, Membership.student_id == Student.id)
    if timers:
        query = query.join(ScheduledEvent, ScheduledEvent.membership_id == Membership.id).distinct()
    rows = session.execute(query.where(*conditions).order_by(Student.email).limit(EXAMPLES)).all()
    return tuple(f"{email} ({product})" for email, product in rows)


def _pending_timers(session: Session, *conditions) -> int:
    query = (
        select(func.count())
        .select_from(ScheduledEvent)
        .join(Membership, ScheduledEvent.membership_id == Membership.id)
        .where(ScheduledEvent.status == TimerStatus.PENDING, *conditions)
    )
    return session.scalar(query) or 0


def _where(rules: Rules, key: str) -> tuple[str, int | None]:
    file, line = rules.locations.get(key, ("rules/", None))
    return file, line


def _memberships_misfit(
    session: Session, kind: str, name: str, condition, count: int, where: tuple[str, int | None]
) -> Misfit:
    return Misfit(
        kind=kind,
        name=name,
        memberships=count,
        timers=_pending_timers(session, condition),
        examples=_examples(session, condition),
        file=where[0],
        line=where[1],
    )


def check_database(session: Session, rules: Rules) -> DatabaseFit:
    """What live memberships and pending timers use that ``rules`` does not define."""
    fit = DatabaseFit()
    by_state = dict(session.execute(select(Membership.state, func.count()).group_by(Membership.state)).all())
    by_product = dict(
        session.execute(select(Membership.product_key, func.count()).group_by(Membership.product_key)).all()
    )
    by_timer_event = dict(
        session.execute(
            select(ScheduledEvent.event_type, func.count())
            .where(ScheduledEvent.status == TimerStatus.PENDING)
            .group_by(ScheduledEvent.event_type)
        ).all()
    )
    fit.memberships = sum(by_state.values())
    fit.pending_timers = sum(by_timer_event.values())
    states_file, states_line = _where(rules, "lifecycle.states")
    for state, count in sorted(by_state.items()):
        if state in rules.states:
            continue
        if state in rules.renamed_states:
            fit.renames.append(PendingRename(state, rules.renamed_states[state], count))
            continue
        fit.misfits.append(
            _memberships_misfit(session, "state", state, Membership.state == state, count, (states_file, states_line))
        )
    products_dir = posixpath.join(posixpath.dirname(states_file) or "rules", "products/")
    for product, count in sorted(by_product.items()):
        if product in rules.products:
            continue
        fit.misfits.append(
            _memberships_misfit(
                session, "product", product, Membership.product_key == product, count, (products_dir, None)
            )
        )
    events_file, events_line = _where(rules, "lifecycle.events")
    for event_type, count in sorted(by_timer_event.items()):
        if event_type in rules.internal_events:
            continue
        pending_of_type = (ScheduledEvent.status == TimerStatus.PENDING, ScheduledEvent.event_type == event_type)
        fit.misfits.append(
            Misfit(
                kind="timer event",
                name=event_type,
                memberships=0,
                timers=count,
                examples=_examples(session, *pending_of_type, timers=True),
                file=events_file,
                line=events_line,
            )
        )
    return fit


def apply_renames(
    sessions: sessionmaker[Session], rules: Rules, *, at: datetime, actor: str, rules_version: str | None = None
) -> int:
    """Move the memberships in a renamed state to its new name; one history entry each.

    The conditional UPDATE makes it safe with several workers: a membership is moved (and
    recorded) once. Each in its own short transaction under its buyer's lock (the lock order
    of ``engine.db.locks``), so a rename never holds rows a worker is writing. Its pending
    timers stay: they belong to the membership, not the state.
    """
    moved = 0
    for old, new in rules.renamed_states.items():
        with sessions() as session:
            rows = session.execute(
                select(Membership.id, Membership.student_id, Student.email)
                .join(Student, Student.id == Membership.student_id)
                .where(Membership.state == old)
                .order_by(Membership.id)
            ).all()
        for membership_id, student_id, email in rows:
            with sessions.begin() as session:
                lock_buyer_for_transaction(session, email)
                result = session.execute(
                    update(Membership)
                    .where(Membership.id == membership_id, Membership.state == old)
                    .values(state=new)
                    .execution_options(synchronize_session=False)
                )
                if not result.rowcount:
                    continue
                timers = session.scalars(
                    select(ScheduledEvent.event_type).where(
                        ScheduledEvent.membership_id == membership_id, ScheduledEvent.status == TimerStatus.PENDING
                    )
                ).all()
                record_history(
                    session,
                    kind="state_renamed",
                    at=at,
                    student_id=student_id,
                    membership_id=membership_id,
                    actor=actor,
                    rules_version=rules_version,
                    detail={"from": old, "to": new, "pending_timers": sorted(timers)},
                )
                moved += 1
        if rows:
            log.info("renamed state %r to %r on %d membership(s)", old, new, len(rows))
    return moved


def fit_database(rt: Runtime, *, renames_only: bool = False) -> None:
    """The worker's side: once per loaded rules version, apply the renames and alert on misfits.

    ``renames_only`` (the periodic sweep) re-applies the renames even without a new version:
    a process still on the old rules may have moved a membership into the old name since.
    """
    if not rt.rules.available:
        return  # no valid rules loaded yet: nothing to compare with
    generation = rt.rules.generation
    fresh = _fitted.get(rt.rules) != generation
    rules = rt.rules.rules
    if not fresh and not (renames_only and rules.renamed_states):
        return
    with _fit_lock:
        fresh = _fitted.get(rt.rules) != generation
        apply_renames(rt.sessions, rules, at=rt.now(), actor="worker", rules_version=rt.rules.version)
        with rt.sessions.begin() as session:
            if fresh:
                for misfit in check_database(session, rules).misfits:
                    _alert_once(rt, session, misfit)
        _fitted[rt.rules] = generation


def _alert_once(rt: Runtime, session: Session, misfit: Misfit) -> None:
    """One open alert per cause (grouped): a reload or a restart counts it, never a new alert."""
    raise_alert(
        rt,
        session,
        kind=ALERT_KIND,
        message=alert_texts.rules_misfit(misfit),
        group_key=f"{ALERT_KIND}:{misfit.kind}:{misfit.name}",
    )
