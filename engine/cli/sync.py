"""``engine sync hotmart``: read Hotmart's API and catch up on the webhooks that never came
(report first; ``--apply`` stores the changes found as events the worker applies)."""

from __future__ import annotations

import json

import click

from engine.cli.base import main, parse_since, progress_bar
from engine.cli.errors import CommandError
from engine.cli.stored_runs import LAST_OPTION, exit_held, run_mode, show_last, worker_runtime


@main.group()
def sync() -> None:
    """Catch up on webhooks that never came, from a platform's API (report, then --apply)."""


@sync.command("hotmart")
@click.option(
    "--since",
    "since_text",
    default=None,
    help="Read the sales ordered since this ISO date (default: the last run that left nothing, minus 7 days; "
    "else 60 days back).",
)
@click.option("--apply", "apply_", is_flag=True, help="Store the changes found as events; the worker applies them.")
@click.option("--grants-only", is_flag=True, help="With --apply: only the approvals; report the rest.")
@click.option("--confirm", is_flag=True, help="With --apply: store changes that end access beyond the guard.")
@click.option(
    "--max-revokes",
    type=click.IntRange(min=0),
    default=None,
    help="Changes that end access stored without --confirm (default: 10 or 5% of the students).",
)
@LAST_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def hotmart(
    since_text: str | None,
    apply_: bool,
    grants_only: bool,
    confirm: bool,
    max_revokes: int | None,
    last: bool,
    as_json: bool,
) -> None:
    """Compare Hotmart's subscriptions and sales with the event log; --apply catches up."""
    if (grants_only or confirm or max_revokes is not None) and not apply_:
        raise click.UsageError("--grants-only, --confirm and --max-revokes go with --apply")
    since = parse_since(since_text)
    if last:
        from engine.catchup import last_run

        run = last_run(worker_runtime(), "hotmart")
        show_last(run, none_yet="no hotmart sync run stored yet", as_json=as_json, text=run_text)
        return
    mode = run_mode(apply_, grants_only)
    _run("hotmart", mode, since=since, confirm=confirm, max_revokes=max_revokes, as_json=as_json)


def _run(source: str, mode: str, *, since, confirm: bool, max_revokes: int | None, as_json: bool) -> None:
    from connectors.errors import WireError
    from engine.catchup import Busy, run_sync
    from engine.catchup.schedule import hotmart_reader

    rt = worker_runtime()
    if missing := rt.settings.missing_hotmart_credentials():
        raise CommandError(f"{', '.join(missing)} not set: the credentials of Hotmart's API (docs: Hotmart's API)")
    reader = hotmart_reader(rt.settings)
    try:
        run_id, report, stored = run_sync(
            rt,
            reader,
            source=source,
            mode=mode,
            since=since,
            confirm=confirm,
            max_revokes=max_revokes,
            progress=progress_bar,
        )
    except Busy as exc:
        raise CommandError(str(exc)) from None
    except WireError as exc:  # its text names no secret (connectors/hotmart_wire.py scrubs them)
        raise CommandError(f"{exc.error}: {exc.detail}; `engine doctor --hotmart` checks the credentials") from None
    finally:
        reader.close()
    if as_json:
        click.echo(
            json.dumps(
                {"run_id": run_id, **report.to_dict(), "applied": stored.to_dict() if stored else None},
                ensure_ascii=False,
            )
        )
    else:
        for line in report.summary():
            click.echo(line)
        click.echo(_applied_text(source, run_id, mode, report, stored))
    if stored is not None and stored.held:
        exit_held(f"  would end access: {finding.line()}" for finding in report.ending())


def _applied_text(source: str, run_id: int, mode: str, report, stored) -> str:
    if mode == "report":
        hint = f"; engine sync {source} --apply stores them" if not report.empty else ""
        return f"run {run_id}: report only{hint}"
    if stored is None:
        return f"run {run_id}: nothing to store"
    if stored.held:
        return (
            f"run {run_id}: HELD by the blast-radius guard: {len(report.ending())} change(s) that end access, more "
            f"than {stored.limit}; nothing stored (an alert was raised). If Hotmart is right: "
            f"engine sync {source} --apply --confirm"
        )
    left = f"; {stored.left} left (--grants-only)" if stored.left else ""
    duplicates = f"; {stored.duplicates} arrived meanwhile as webhooks" if stored.duplicates else ""
    return (
        f"run {run_id}: stored {len(stored.events)} event(s){duplicates}{left}; the worker applies them "
        f"(engine events shows them, origin {source}-api)"
    )


def run_text(run: dict) -> str:
    """A stored run (``--last``), as an operator reads it."""
    report = run.get("report") or {}
    totals = report.get("totals") or {}
    lines = [
        f"run {run['id']} ({run['trigger']}, {run['mode']}): {run['status']}, started {run['started_at']}, "
        f"sales since {run['since']}; {totals.get('found', 0)} change(s) found"
    ]
    for product, counts in (run.get("counts") or {}).items():
        lines.append(f"  {product}: " + ", ".join(f"{kind} {n}" for kind, n in counts.items()))
    for why, n in (report.get("passed_over") or {}).items():
        lines.append(f"  passed over: {n} {why}")
    for note in report.get("notes") or []:
        lines.append(f"  note: {note}")
    if run.get("applied"):
        applied = run["applied"]
        lines.append(
            f"  stored: {len(applied.get('events') or [])} event(s), {applied.get('duplicates', 0)} duplicate(s), "
            f"{applied.get('left', 0)} left" + (" (held by the guard)" if applied.get("held") else "")
        )
    if run.get("error"):
        lines.append(f"  error: {run['error']}")
    return "\n".join(lines)
