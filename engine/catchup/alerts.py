"""What a sync tells the admins: what a scheduled run found and left (one ``<source>.drift`` alert,
counted while it stays open), and, in an open no-webhook alert, how many changes the silence hid."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import select

from engine import alert_texts
from engine.catchup.report import Finding, Report
from engine.catchup.store import Stored
from engine.db.models import Alert
from engine.pipeline.alerts import notify_alerts, raise_alert
from engine.pipeline.runtime import Runtime
from engine.pipeline.silence import ALERT_KIND as SILENCE_ALERT
from engine.sources import Source


def summary(found: list[Finding]) -> str:
    """``curso: 2 PURCHASE_REFUNDED, 1 PURCHASE_APPROVED; comunidade: 1 SUBSCRIPTION_CANCELLATION``"""
    per_product: dict[str, Counter[str]] = {}
    for finding in found:
        per_product.setdefault(finding.product, Counter())[finding.event_type] += 1
    return "; ".join(
        f"{product}: " + ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items(), key=lambda kn: (-kn[1], kn[0])))
        for product, counts in sorted(per_product.items())
    )


def left(report: Report, stored: Stored | None, source: Source) -> list[Finding]:
    """The findings a run did not store that would change something (a held run alerted already)."""
    if stored is None:
        candidates = report.findings  # a report
    elif stored.held or stored.left == 0:
        return []
    else:  # grants only: the rest is left
        candidates = [f for f in report.findings if f.event_type not in source.granting_events]
    return [f for f in candidates if f.effect != "none"]


def alert_drift(rt: Runtime, source: Source, run_id: int, report: Report, stored: Stored | None) -> None:
    """A scheduled run tells the admins what it found and left for them: one open alert."""
    found = left(report, stored, source)
    if not found:
        return
    setting = f"{source.name.upper()}_SYNC_APPLY"
    mode = getattr(rt.settings, f"{source.name}_sync_apply", "none")
    message = alert_texts.sync_drift(source, run_id, setting, mode, summary(found), found[0].line())
    with rt.sessions.begin() as session:
        raise_alert(rt, session, kind=f"{source.name}.drift", message=message, group_key=f"{source.name}.drift")
    notify_alerts(rt)


def note_in_silence_alert(rt: Runtime, source: Source, run_id: int, report: Report) -> bool:
    """An open no-webhook alert of ``source`` raised before this run says how many changes the
    silence hid (what this run found) and is posted again; True when there was one."""
    opening = alert_texts.no_webhooks_opening(source.title)
    with rt.sessions.begin() as session:
        alert = session.scalar(
            select(Alert)
            .where(
                Alert.kind == SILENCE_ALERT,
                Alert.acknowledged_at.is_(None),
                Alert.message.startswith(opening),
                Alert.created_at <= report.until,
            )
            .order_by(Alert.id.desc())
            .limit(1)
            .with_for_update()
        )
        if alert is None:
            return False
        found = report.findings
        alert.message = alert_texts.silence_hid(alert.message, run_id, len(found), summary(found), source.name)[:4000]
        alert.notified = None  # posted again, with what the silence hid
    notify_alerts(rt)
    return True
