"""The admin page's overview, in one read: memberships per product and state, the students waiting
for their Discord link too long, the events needing attention grouped by cause, open alerts, each
platform's last webhook, the processes' heartbeats and the rules each runs, the last Hotmart sync."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine.db.models import Alert, Event, Heartbeat, Membership, Student
from engine.db.webhooks import last_webhook_at
from engine.rules.model import Rules
from engine.service.status import UNPROCESSED
from engine.service.students import states_waiting_for_link
from engine.service.sync_runs import LastSync, last_sync
from engine.settings import Settings
from engine.statuses import EventStatus

STUCK_SHOWN = 20  # the oldest waiting students listed; the count says how many there are
CAUSES_SHOWN = 20


@dataclass(frozen=True)
class StuckStudent:
    email: str
    name: str | None
    product: str
    state: str
    since: datetime


@dataclass(frozen=True)
class AttentionCause:
    reason: str
    events: int
    oldest_id: int
    newest_at: datetime


@dataclass(frozen=True)
class Webhook:
    source: str
    last_at: datetime | None
    silent: bool  # no webhook for longer than ALERT_NO_WEBHOOKS_HOURS


@dataclass(frozen=True)
class Process:
    name: str
    beat_at: datetime
    stale: bool
    rules_version: str | None


@dataclass(frozen=True)
class Overview:
    products: dict[str, dict[str, int]]  # product -> state -> memberships
    states: list[str]  # the rules' states, in their order (the table's columns)
    stuck: list[StuckStudent]
    stuck_total: int
    stuck_days: int
    attention: list[AttentionCause]
    attention_total: int
    open_alerts: int
    webhooks: list[Webhook]
    processes: list[Process]
    rules_version: str | None
    rules_error: str | None
    unprocessed: int
    oldest_unprocessed_at: datetime | None = None
    workers_behind: list[str] = field(default_factory=list)
    sync_enabled: bool = False  # HOTMART_SYNC_ENABLED
    last_sync: LastSync | None = None  # the newest `engine sync hotmart` run


def overview(
    session: Session,
    rules: Rules | None,
    settings: Settings,
    *,
    sources: list[str],
    rules_version: str | None,
    rules_error: str | None,
    now: datetime,
) -> Overview:
    per_product: dict[str, dict[str, int]] = {}
    for product, state, count in session.execute(
        select(Membership.product_key, Membership.state, func.count()).group_by(
            Membership.product_key, Membership.state
        )
    ):
        per_product.setdefault(product, {})[state] = count
    states = list(rules.states) if rules is not None else []
    for counts in per_product.values():
        states.extend(state for state in counts if state not in states)

    waiting = sorted(states_waiting_for_link(rules)) if rules is not None else []
    stuck_where = (
        Membership.state.in_(waiting),
        Membership.state_changed_at < now - timedelta(days=settings.stuck_days),
    )
    stuck_total = session.scalar(select(func.count()).select_from(Membership).where(*stuck_where)) or 0
    stuck = [
        StuckStudent(email, name, product, state, since)
        for email, name, product, state, since in session.execute(
            select(Student.email, Student.name, Membership.product_key, Membership.state, Membership.state_changed_at)
            .join(Student, Student.id == Membership.student_id)
            .where(*stuck_where)
            .order_by(Membership.state_changed_at, Membership.id)
            .limit(STUCK_SHOWN)
        )
    ]

    needs_attention = Event.status == EventStatus.NEEDS_ATTENTION
    attention_total = session.scalar(select(func.count()).select_from(Event).where(needs_attention)) or 0
    attention = [
        AttentionCause(reason or "", count, oldest, newest)
        for reason, count, oldest, newest in session.execute(
            select(Event.reason, func.count(), func.min(Event.id), func.max(Event.received_at))
            .where(needs_attention)
            .group_by(Event.reason)
            .order_by(func.count().desc(), Event.reason)
            .limit(CAUSES_SHOWN)
        )
    ]

    open_alerts = session.scalar(select(func.count()).select_from(Alert).where(Alert.acknowledged_at.is_(None))) or 0
    quiet_after = timedelta(hours=settings.alert_no_webhooks_hours) if settings.alert_no_webhooks_hours else None
    webhooks = []
    for source in sources:
        last = last_webhook_at(session, source)
        silent = quiet_after is not None and (last is None or now - last > quiet_after)
        webhooks.append(Webhook(source, last, silent))

    stale_after = timedelta(seconds=settings.worker_stale_seconds)
    processes = [
        Process(beat.name, beat.beat_at, now - beat.beat_at > stale_after, beat.rules_version)
        for beat in session.scalars(select(Heartbeat).where(Heartbeat.name != "healthcheck").order_by(Heartbeat.name))
    ]
    behind = [
        p.name
        for p in processes
        if not p.stale and p.name.startswith("worker") and rules_version and p.rules_version != rules_version
    ]

    unprocessed, oldest = session.execute(
        select(func.count(), func.min(Event.received_at)).where(Event.status.in_(UNPROCESSED))
    ).one()
    return Overview(
        products=dict(sorted(per_product.items())),
        states=states,
        stuck=stuck,
        stuck_total=stuck_total,
        stuck_days=settings.stuck_days,
        attention=attention,
        attention_total=attention_total,
        open_alerts=open_alerts,
        webhooks=webhooks,
        processes=processes,
        rules_version=rules_version,
        rules_error=rules_error,
        unprocessed=unprocessed or 0,
        oldest_unprocessed_at=oldest,
        workers_behind=behind,
        sync_enabled=settings.hotmart_sync_enabled,
        last_sync=last_sync(session),
    )
