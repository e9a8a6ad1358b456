"""Applying a sync: each change found is stored as the webhook that never came, through the same
intake (:func:`engine.pipeline.intake.store_webhook`), and queued; the ordinary pipeline decides
and runs it. Its ``origin`` says where it came from (the event log shows it; the silence alert
does not count it as a webhook), its change key makes the webhook that may still come a duplicate.

Guard: more changes that would end access than reconcile allows without confirmation
(:func:`engine.reconcile.apply.revoke_limit`: 10 or 5 % of the students, the larger) store
nothing without ``confirm``: an alert is raised and the list is kept in the run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from typing import Any

from engine import alert_texts
from engine.catchup.report import Finding, Report
from engine.pipeline.alerts import notify_alerts, raise_alert
from engine.pipeline.intake import store_webhook
from engine.pipeline.runtime import Runtime
from engine.reconcile.apply import revoke_limit
from engine.sources import Source, source_enabled

log = logging.getLogger(__name__)
_BATCH = 200  # events per transaction


def origin_of(source: Source) -> str:
    """The ``origin`` of the events a sync of ``source`` stores: "hotmart-api"."""
    return f"{source.name}-api"


@dataclass
class Stored:
    held: bool = False  # the guard stopped the run: nothing stored
    limit: int = 0
    events: list[int] = field(default_factory=list)  # stored and queued (or held, as the source's webhooks)
    duplicates: int = 0  # the change arrived meanwhile (its webhook)
    left: int = 0  # found and not stored (grants only: the rest is the operator's)
    alert_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def store_findings(
    rt: Runtime,
    source: Source,
    report: Report,
    *,
    students: int,
    grants_only: bool = False,
    confirm: bool = False,
    confirmed: Collection[str] | None = None,
    max_revokes: int | None = None,
    run_id: int | None = None,
) -> Stored:
    """Store and queue ``report``'s findings (``grants_only``: only the granting ones), unless the
    guard holds them. ``confirmed``: the change keys of the endings a person read before
    confirming (the admin page lists a stored run's); ``confirm`` then covers those only, and an
    ending found since is held as without it."""
    chosen = [f for f in report.findings if not grants_only or f.event_type in source.granting_events]
    ending = [finding for finding in chosen if finding.effect == "ends"]
    limit = revoke_limit(students, max_revokes)
    if confirmed is not None:
        confirm = confirm and all(finding.change_key in confirmed for finding in ending)
    if len(ending) > limit and not confirm:
        return _hold(rt, source, ending, limit, run_id, len(report.findings))
    stored = Stored(limit=limit, left=len(report.findings) - len(chosen))
    held = not source_enabled(rt.settings, source.name)
    for start in range(0, len(chosen), _BATCH):
        batch = _store(rt, source, chosen[start : start + _BATCH], held=held)
        stored.events += batch
        stored.duplicates += len(chosen[start : start + _BATCH]) - len(batch)
        if not held:
            for event_id in batch:
                rt.queue.enqueue(event_id)
    log.info(
        "%s sync run %s: stored %d event(s), %d duplicate(s), %d left",
        source.title,
        run_id,
        len(stored.events),
        stored.duplicates,
        stored.left,
    )
    return stored


def _store(rt: Runtime, source: Source, findings: list[Finding], *, held: bool) -> list[int]:
    ids = []
    now = rt.now()
    with rt.sessions.begin() as session:
        for finding in findings:
            raw = json.dumps(finding.body, ensure_ascii=False).encode()
            result = store_webhook(source, session, raw, {}, held=held, origin=origin_of(source), received_at=now)
            ids += result.event_ids
    return ids


def _hold(rt: Runtime, source: Source, ending: list[Finding], limit: int, run_id: int | None, found: int) -> Stored:
    message = alert_texts.sync_guard(source, run_id, ending, len({f.email for f in ending}), limit, found)
    with rt.sessions.begin() as session:
        alert = raise_alert(rt, session, kind=f"{source.name}.sync_guard", message=message)
        alert_id = alert.id
    notify_alerts(rt)
    return Stored(held=True, limit=limit, left=found, alert_id=alert_id)
