"""Admin alerts: a row in ``alerts`` and a message in the Discord admin channel.

Alerts with a ``group_key`` are grouped: while one is open (not acknowledged), later
occurrences of the same cause raise its ``count`` and ``last_seen_at`` instead of adding
rows, and it is posted again at most once per :data:`REPOST_AFTER` with the new count.

The texts are :mod:`engine.alert_texts`'s.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.base import StepStatus
from engine import alert_texts
from engine.db.locks import Namespace, transaction_lock
from engine.db.models import Alert
from engine.pipeline.runtime import Runtime

log = logging.getLogger(__name__)
_raised = threading.local()


def take_raised() -> bool:
    """Whether this thread raised an alert since it last asked (then post it without waiting)."""
    raised = getattr(_raised, "flag", False)
    _raised.flag = False
    return raised


REPOST_AFTER = timedelta(hours=1)


def raise_alert(
    rt: Runtime,
    session: Session,
    *,
    kind: str,
    message: str,
    event_id: int | None = None,
    action_run_id: int | None = None,
    student_id: int | None = None,
    group_key: str | None = None,
) -> Alert:
    """Record an alert; :func:`notify_alerts` posts it once the transaction is committed.

    With ``group_key``, an open alert of the same key counts this occurrence instead.
    """
    if group_key:
        grouped = _count_in_group(rt, session, group_key[:200], message)
        if grouped is not None:
            return grouped
    alert = Alert(
        kind=kind,
        message=message[:4000],
        event_id=event_id,
        action_run_id=action_run_id,
        student_id=student_id,
        created_at=rt.now(),
        group_key=group_key[:200] if group_key else None,
        count=1,
        last_seen_at=rt.now(),
    )
    session.add(alert)
    session.flush()
    _raised.flag = True
    log.warning("alert %s (%s): %s", alert.id, kind, message)
    return alert


def _count_in_group(rt: Runtime, session: Session, group_key: str, message: str) -> Alert | None:
    transaction_lock(session, Namespace.ALERT_GROUP, group_key)  # two workers, one new cause: one alert
    alert = session.scalar(
        select(Alert)
        .where(Alert.group_key == group_key, Alert.acknowledged_at.is_(None))
        .order_by(Alert.id.desc())
        .limit(1)
        .with_for_update()
    )
    if alert is None:
        return None
    now = rt.now()
    alert.count = (alert.count or 1) + 1
    alert.last_seen_at = now
    alert.message = message[:4000]
    if alert.notified is not None and (alert.notified_at is None or now - alert.notified_at >= REPOST_AFTER):
        alert.notified = None  # post the new count (spaced: a burst is not a flood)
    log.warning("alert %s (%s) seen %d times: %s", alert.id, alert.kind, alert.count, message)
    return alert


def notify_alerts(rt: Runtime, limit: int = 50) -> int:
    """Post the alerts not yet posted to the Discord admin channel; returns how many were handled.

    The message nonce is derived from the alert id, so a post retried after a crash or
    by two workers at once shows up once.
    """
    sink = rt.alert_sink
    if sink is None or not hasattr(sink, "post_alert"):
        return 0
    with rt.sessions.begin() as session:
        pending = session.scalars(select(Alert).where(Alert.notified.is_(None)).order_by(Alert.id).limit(limit)).all()
        items = [(alert.id, alert.message, alert.count or 1) for alert in pending]
    handled = 0
    for alert_id, message, count in items:
        nonce = f"alert-{alert_id}" if count == 1 else f"alert-{alert_id}-{count}"
        result = sink.post_alert(alert_texts.in_channel(message, count), nonce=nonce)
        if result.status is StepStatus.FAILED and result.retryable:
            continue  # left unposted: the next sweep tries again (same nonce)
        with rt.sessions.begin() as session:
            alert = session.get(Alert, alert_id)
            alert.notified, alert.notified_at = result.status.value, rt.now()
        handled += 1
    return handled
