"""Admin alerts: a row in ``alerts`` and a message in the Discord admin channel.

The engine's own alert texts live here (a rule's ``alert`` step brings its own).
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.base import StepResult, StepStatus
from engine.db.models import ActionRun, Alert, Event
from engine.pipeline.runtime import Runtime

log = logging.getLogger(__name__)


def step_failed_text(event: Event, run: ActionRun, result: StepResult, *, retried: bool) -> str:
    """A failed step: what failed, why, and whether retrying is safe and how."""
    what = f"Step {run.action} for {event.email or 'student ' + str(event.student_id)} (event {event.id}, {event.type})"
    text = f"{what} failed: {result.error}. {result.detail}".strip()
    if result.maybe_delivered:
        text += (
            " It may have been delivered, so it was NOT retried automatically: check before retrying "
            f"(POST /admin/events/{event.id}/retry)."
        )
    elif retried:
        text += f" Retried once already. Fix the cause, then POST /admin/events/{event.id}/retry."
    else:
        text += f" Retrying cannot help until the cause is fixed; then POST /admin/events/{event.id}/retry."
    return text


def channel_text(kind: str, message: str) -> str:
    """An alert as posted in the Discord admin channel (Discord takes 2,000 characters)."""
    return f"⚠️ [{kind}] {message}"[:2000]


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
    for alert_id, kind, message in items:
        result = sink.post_alert(channel_text(kind, message), nonce=f"alert-{alert_id}")
        if result.status is StepStatus.FAILED and result.retryable:
            continue  # left unposted: the next sweep tries again (same nonce)
        with rt.sessions.begin() as session:
            session.get(Alert, alert_id).notified = result.status.value
        handled += 1
    return handled
