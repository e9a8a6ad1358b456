"""No webhook for too long raises one alert.

A platform disables (Hotmart) or gives up on (Eduzz) a webhook URL after repeated failures (a
TLS or DNS change, a proxy outage) and tells nobody: the only symptom is that webhooks stop.
The periodic sweep checks each source that ever sent one; one alert per silence (the next one
only after webhooks came back and stopped again).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from engine import alert_texts
from engine.db.locks import Namespace, transaction_lock
from engine.db.models import Alert
from engine.db.webhooks import last_webhook_at
from engine.pipeline.alerts import raise_alert
from engine.pipeline.runtime import Runtime
from engine.sources import SOURCES, Source

ALERT_KIND = "webhooks.silent"


def alert_webhook_silence(rt: Runtime) -> bool:
    """True when this call raised an alert (one per silent source)."""
    hours = rt.settings.alert_no_webhooks_hours
    if hours <= 0:
        return False
    return any([_alert_silent_source(rt, source, hours) for source in SOURCES.values()])


def _alert_silent_source(rt: Runtime, source: Source, hours: float) -> bool:
    now = rt.now()
    with rt.sessions.begin() as session:
        last = last_webhook_at(session, source.name)
        # Never a webhook: nothing has stopped yet (a course not on sale there, a test install).
        if last is None or now - last < timedelta(hours=hours):
            return False
        transaction_lock(session, Namespace.SILENCE)  # two workers sweeping at once alert once
        opening = alert_texts.no_webhooks_opening(source.title)
        raised = session.scalar(
            select(Alert.id)
            .where(Alert.kind == ALERT_KIND, Alert.created_at > last, Alert.message.startswith(opening))
            .limit(1)
        )
        if raised is not None:
            return False
        silent_for = (now - last).total_seconds() / 3600
        raise_alert(
            rt,
            session,
            kind=ALERT_KIND,
            message=alert_texts.no_webhooks(source.title, last, silent_for, hours, source.silence_hint),
        )
    return True
