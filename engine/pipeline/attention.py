"""``needs_attention``: what the rules do not know or the worker cannot process.

Never a silent ignore: the event keeps its reason, one grouped alert per cause counts the
events, and the event can be replayed once the cause is fixed (:mod:`engine.pipeline.replay`).
Causes: a Hotmart product id no product claims, a product key or a membership state the
rules no longer have, rules that cannot be loaded, an event the worker fails on repeatedly
(a poison event).
"""

from __future__ import annotations

import logging

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from engine import alert_texts
from engine.db.models import Event, utcnow
from engine.pipeline.alerts import raise_alert
from engine.pipeline.locks import lock_event_buyer
from engine.pipeline.runtime import Runtime
from engine.rules import unmanaged
from engine.statuses import EventStatus

log = logging.getLogger(__name__)

NEEDS_ATTENTION = EventStatus.NEEDS_ATTENTION
# The reason of events that arrived while no valid rules were loaded: resumed by the sweep
# as soon as valid rules are (see engine.pipeline.sweep.resume_waiting_for_rules).
RULES_UNAVAILABLE = "rules cannot be loaded"
# Set in ``session.info`` by a preview (dry-run replay): the verdict, without the alert.
PREVIEW = "needs_attention.preview"


def needs_attention(
    rt: Runtime, session: Session, event: Event, reason: str, *, kind: str, group: str, advice: str
) -> tuple[None, str]:
    """Mark the event and count it in its cause's alert."""
    event.status, event.reason, event.processed_at = NEEDS_ATTENTION, reason[:2000], utcnow()
    if session.info.get(PREVIEW):
        return None, NEEDS_ATTENTION
    raise_alert(
        rt,
        session,
        kind=kind,
        message=alert_texts.needs_attention(event, reason, advice),
        event_id=event.id,
        student_id=event.student_id,
        group_key=f"{kind}:{group}",
    )
    return None, NEEDS_ATTENTION


def unknown_product(rt: Runtime, session: Session, event: Event, product_id: object) -> tuple[None, str]:
    shown = product_id or "(none)"
    return needs_attention(
        rt,
        session,
        event,
        f"no product matches id {shown}",
        kind="rules.unknown_product",
        group=str(shown),
        advice=alert_texts.unknown_product_advice(unmanaged.listing(event.source)),
    )


def unknown_product_key(rt: Runtime, session: Session, event: Event, product_key: str | None) -> tuple[None, str]:
    key = product_key or "(none)"
    return needs_attention(
        rt,
        session,
        event,
        f"product {key} is not defined in the rules",
        kind="rules.unknown_product_key",
        group=key,
        advice=alert_texts.unknown_product_key_advice(),
    )


def unknown_state(rt: Runtime, session: Session, event: Event, product_key: str, state: str) -> tuple[None, str]:
    return needs_attention(
        rt,
        session,
        event,
        f"{product_key}: membership is in state {state!r}, which the rules no longer have",
        kind="rules.unknown_state",
        group=f"{product_key}:{state}",
        advice=alert_texts.unknown_state_advice(),
    )


def rules_unavailable(rt: Runtime, session: Session, event: Event, error: str | None) -> tuple[None, str]:
    return needs_attention(
        rt,
        session,
        event,
        f"{RULES_UNAVAILABLE}: {error or 'invalid rules'}",
        kind="rules.unavailable",
        group="waiting",
        advice=alert_texts.rules_unavailable_advice(),
    )


def report_rules_failure(rt: Runtime) -> None:
    """One alert per broken rules version, naming every ``file:line``."""
    failure = rt.rules.take_failure()
    if failure is None:
        return
    digest, problems = failure
    with rt.sessions.begin() as session:
        raise_alert(
            rt,
            session,
            kind="rules.invalid",
            message=alert_texts.rules_invalid(digest, rt.rules.rules_dir, rt.rules.version, problems),
            group_key=f"rules.invalid:{digest}",
        )


def is_transient(exc: BaseException) -> bool:
    """A lost database connection is no fault of the event: it does not count towards poison."""
    return isinstance(exc, OperationalError) or (isinstance(exc, DBAPIError) and exc.connection_invalidated)


def record_failure(rt: Runtime, event_id: int, exc: BaseException) -> str:
    """Count a worker exception on the event; the Nth makes it ``needs_attention`` (a poison event)."""
    limit = rt.settings.worker_max_failures
    error = f"{type(exc).__name__}: {exc}".splitlines()[0][:500] if str(exc) else type(exc).__name__
    with rt.sessions.begin() as session:
        lock_event_buyer(session, event_id)
        event = session.get(Event, event_id)
        if event is None:
            return "missing"
        event.failures = (event.failures or 0) + 1
        if event.failures < limit:
            event.reason = f"worker error (attempt {event.failures} of {limit}): {error}"[:2000]
            return event.status
        needs_attention(
            rt,
            session,
            event,
            f"the worker failed {event.failures} times on this event: {error}",
            kind="worker.poison",
            group=type(exc).__name__,
            advice="It is no longer re-queued. Fix the cause, then `engine retry ID` (or replay it).",
        )
        return NEEDS_ATTENTION
