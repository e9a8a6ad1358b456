"""``engine replay`` and ``POST /admin/replay``: choose stored events (by default every
needs_attention one, plus any named) and replay them against the current rules, or only say
what each would become (a dry run). How one event is replayed is :mod:`engine.pipeline.replay`'s
(the worker replays with it too, the events that waited for valid rules).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from engine.pipeline.processing import process_event
from engine.pipeline.replay import ReplayResult, preview, replay, select_events, summarize
from engine.pipeline.runtime import Runtime
from engine.service import schemas
from engine.service.redaction import Redactor

__all__ = ["ReplayResult", "RulesUnavailable", "choose_events", "replay_events", "replay_out", "summarize"]


class RulesUnavailable(Exception):
    """No valid rules are loaded: nothing can be decided again."""


def choose_events(
    rt: Runtime,
    *,
    status: str | None,
    event_type: str | None = None,
    since: datetime | None = None,
    reason: str | None = None,
    up_to_id: int | None = None,
    ids: Iterable[int] = (),
) -> list[int]:
    """The ids to replay, oldest first (see :func:`engine.pipeline.replay.select_events`), once the
    newest rules on disk are loaded; raises :class:`RulesUnavailable` when none are valid."""
    rt.rules.reload_if_changed()
    if not rt.rules.available:
        raise RulesUnavailable(rt.rules.load_error)
    with rt.sessions() as session:
        return select_events(
            session, status=status, event_type=event_type, since=since, reason=reason, up_to_id=up_to_id, ids=ids
        )


def replay_events(
    rt: Runtime,
    event_ids: Iterable[int],
    *,
    dry_run: bool,
    actor: str,
    note: str | None = None,
    process_now: bool = False,
    on_each: Callable[[ReplayResult], None] | None = None,
) -> list[ReplayResult]:
    """Replay each event, recorded in its history with ``actor`` and ``note`` (why; optional): queued
    for the workers, or processed here and now (``process_now``: the CLI, which waits to say what became of each);
    ``dry_run``: what each replay would decide, nothing kept. ``on_each`` sees each result as it
    comes (a progress bar). Raises LookupError for an unknown id."""
    if not dry_run:
        return replay(
            rt, event_ids, actor=actor, note=note, process=process_event if process_now else None, on_each=on_each
        )
    results: list[ReplayResult] = []
    for event_id in event_ids:
        results += preview(rt, [event_id])
        if on_each is not None:
            on_each(results[-1])
    return results


def replay_out(rt: Runtime, results: list[ReplayResult], *, dry_run: bool) -> schemas.ReplayOut:
    """The API's answer: the rules version that decided, the outcomes counted, reasons redacted."""
    redact = Redactor.for_settings(rt.settings)
    return schemas.ReplayOut(
        dry_run=dry_run,
        rules_version=rt.rules.version,
        count=len(results),
        summary=summarize(results),
        items=[schemas.ReplayItem(**{**r.to_dict(), "reason": redact.text(r.reason)}) for r in results],
    )
