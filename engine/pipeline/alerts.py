"""Admin alerts: a row in ``alerts`` and a message in the Discord admin channel."""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.base import StepStatus
from engine.db.models import Alert
from engine.pipeline.runtime import Runtime

log = logging.getLogger(__name__)


def raise_alert(
    rt: Runtime,
    session: Session,
    *,
    kind: str,
    message: str,
    event_id: int | None = None,
    action_run_id: int | None = None,
    student_id: int | None = None,
) -> Alert:
    """Record an alert; :func:`notify_alerts` posts it once the transaction is committed."""
    alert = Alert(
        kind=kind,
        message=message[:4000],
        event_id=event_id,
        action_run_id=action_run_id,
        student_id=student_id,
        created_at=rt.now(),
    )
    session.add(alert)
    session.flush()
    log.warning("alert %s (%s): %s", alert.id, kind, message)
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
        items = [(alert.id, alert.kind, alert.message) for alert in pending]
    handled = 0
    for alert_id, _kind, message in items:
        # The admins read the message itself; the kind (rules.alert, discord.forbidden...) is for the API.
        result = sink.post_alert(f"⚠️ {message}"[:2000], nonce=f"alert-{alert_id}")
        if result.status is StepStatus.FAILED and result.retryable:
            continue  # left unposted: the next sweep tries again (same nonce)
        with rt.sessions.begin() as session:
            session.get(Alert, alert_id).notified = result.status.value
        handled += 1
    return handled
