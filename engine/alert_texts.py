"""Every alert text the engine writes, in one place (a rule's ``alert`` step brings its own).

An alert says what happened, why it matters and what the admin does next; each function here
builds one kind. Callers decide when to raise it (:func:`engine.pipeline.alerts.raise_alert`); the watchdog's,
the reconcile's and the doctor's texts come from here too.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from connectors.base import StepResult

# Events and steps are the models' (engine.db.models), typed Any here: this module imports
# nothing of the engine, so that every layer (the database's watchdog query included) may use it.
Event = ActionRun = Any

REPLAY_HINT = "then `engine replay --status needs_attention` (or POST /admin/replay)"


def step_failed(event: Event, run: ActionRun, result: StepResult, *, retried: bool) -> str:
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


def in_channel(message: str, count: int = 1) -> str:
    """An alert as posted in the Discord admin channel (Discord takes 2,000 characters): the message
    itself; the kind (rules.alert, discord.forbidden...) is an internal label, for the API and metrics."""
    seen = f" (seen {count} times)" if count > 1 else ""
    return f"⚠️ {message}{seen}"[:2000]


def needs_attention(event: Event, reason: str, advice: str) -> str:
    return f"{reason} (latest: event {event.id}, {event.type or 'no type'}). {advice}"


def unknown_product_advice(unmanaged_listing: str) -> str:
    return f"Add a rules/products/*.yaml claiming it (or list it under {unmanaged_listing}), {REPLAY_HINT}."


def unknown_product_key_advice() -> str:
    return f"Restore the product's file, {REPLAY_HINT}."


def unknown_state_advice() -> str:
    return f"Put the state back or declare the rename (lifecycle.renamed_states), {REPLAY_HINT}."


def rules_unavailable_advice() -> str:
    return (
        "The worker holds events until valid rules load; they are then processed by themselves "
        "(`engine check` lists every error)."
    )


def rules_invalid(digest: str, rules_dir: object, kept_version: str | None, problems: Sequence[object]) -> str:
    kept = f"keeping version {kept_version}" if kept_version else "no valid rules loaded: events are held"
    listing = "\n".join(str(p) for p in problems)
    return f"rules {digest} in {rules_dir} are invalid ({len(problems)} error(s)); {kept}:\n{listing}"


def rules_misfit(misfit: object) -> str:
    return f"the rules do not fit the database: {misfit}"


def no_webhooks_opening(platform: str) -> str:
    """How a platform's silence alert begins (the sweep looks for an open one by it)."""
    return f"no {platform} webhook for "


def no_webhooks(platform: str, last: datetime, silent_hours: float, limit_hours: float, hint: str) -> str:
    """``hint``: what to check on the platform (its source's ``silence_hint``)."""
    return (
        f"{no_webhooks_opening(platform)}{silent_hours:.0f} hours (the last one arrived {last:%Y-%m-%d %H:%M} UTC; "
        f"ALERT_NO_WEBHOOKS_HOURS={limit_hours:g}). {hint}"
    )


def stuck(
    events: int,
    oldest_event_id: int | None,
    oldest_age: float,
    after: float,
    locks: Sequence[float],
    freed_after: float,
) -> str:
    """Events not finished in time, and buyers' locks held by idle connections (their idle seconds)."""
    parts = []
    if events:
        parts.append(
            f"{events} event(s) not finished {after:.0f} s after arriving "
            f"(oldest: event {oldest_event_id}, {oldest_age:.0f} s)"
        )
    if locks:
        parts.append(
            f"{len(locks)} student lock(s) held by an idle database connection "
            f"(longest {max(locks):.0f} s; freed after {freed_after:.0f} s)"
        )
    return "; ".join(parts)


def reconcile_guard(run_id: int | None, revokes: Sequence, students: int, limit: int) -> str:
    """``revokes``: the revocations the guard held back (each with ``line()``)."""
    run = f" (run {run_id})" if run_id is not None else ""
    return (
        f"Reconcile{run} stopped at the blast-radius guard: {len(revokes)} revocation(s) across "
        f"{students} student(s), more than {limit} allowed without confirmation. "
        f"Nothing was applied. If the rules are right, run `engine reconcile --apply --confirm`; otherwise fix "
        f"the rules. Revocations: {_listed(revokes)}"
    )


def _listed(items: Sequence, shown: int = 20) -> str:
    """The first ``shown`` items' ``line()``, and how many more there are."""
    more = f"; ... and {len(items) - shown} more" if len(items) > shown else ""
    return "; ".join(item.line() for item in items[:shown]) + more


def reconcile_drift(run_id: int, apply_mode: object, summary: str, example: str) -> str:
    return (
        f"Reconcile run {run_id} found access that differs from the rules and left it as is "
        f"(RECONCILE_APPLY={apply_mode}): {summary} (e.g. {example}). "
        "See engine reconcile --last; engine reconcile --apply fixes it."
    )


def sync_guard(source: Any, run_id: int | None, ending: Sequence, students: int, limit: int, found: int) -> str:
    """``engine sync`` held by the blast-radius guard; ``ending``: the changes that would end access
    (each with ``line()``); ``source``: the platform (its ``name`` and ``title``)."""
    run = f" (run {run_id})" if run_id is not None else ""
    return (
        f"{source.title} sync{run} stopped at the blast-radius guard: {len(ending)} change(s) that end access "
        f"across {students} student(s), more than {limit} allowed without confirmation, among {found} change(s) "
        f"no webhook brought. Nothing was stored. If {source.title} is right, run "
        f"`engine sync {source.name} --apply --confirm`; otherwise check the account the credentials read. "
        f"Changes: {_listed(ending)}"
    )


def sync_drift(source: Any, run_id: int, apply_setting: str, apply_mode: object, summary: str, example: str) -> str:
    """What a scheduled ``engine sync`` found that no webhook brought, and left for the admins."""
    return (
        f"{source.title} sync run {run_id} found changes no webhook brought and left them "
        f"({apply_setting}={apply_mode}): {summary} (e.g. {example}). "
        f"See engine sync {source.name} --last; engine sync {source.name} --apply applies them."
    )


def sync_failed(source: Any, detail: str, error: str) -> str:
    """A scheduled ``engine sync`` that could not read the platform (``error``: the wire error's name)."""
    return (
        f"{source.title} sync could not read {source.title}'s API ({error}: {detail}). Webhooks missed "
        f"meanwhile are not caught up. Run `engine doctor --{source.name}`, fix what it names, then "
        f"`engine sync {source.name}`."
    )


SILENCE_HID = " Since then, engine sync "  # how the sync's word in a no-webhook alert begins


def silence_hid(message: str, run_id: int, found: int, summary: str, source_name: str) -> str:
    """An open no-webhook alert's ``message`` saying how many changes the silence hid, as the latest
    sync found them (replacing what an earlier run said)."""
    opening = message.split(SILENCE_HID)[0]
    if not found:
        return f"{opening}{SILENCE_HID}{source_name} (run {run_id}) found no change the silence hid."
    return (
        f"{opening}{SILENCE_HID}{source_name} (run {run_id}) found {found} change(s) the silence hid: "
        f"{summary} (engine sync {source_name} --last lists them)."
    )
