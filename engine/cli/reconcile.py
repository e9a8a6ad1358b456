"""``engine reconcile``: compare Discord roles, ManyChat tags and classes with what the rules want,
and fix the differences (``--apply``); ``engine plan --apply`` hands its candidate rules here too."""

from __future__ import annotations

import json
import sys

import click

from engine.cli.base import main, progress_bar
from engine.cli.stored_runs import LAST_OPTION, exit_held, run_mode, show_last, worker_runtime


@main.command()
@click.option("--apply", "apply_", is_flag=True, help="Fix the differences as pipeline steps (grants, revocations).")
@click.option("--grants-only", is_flag=True, help="With --apply: only the missing grants; leave revocations.")
@click.option("--confirm", is_flag=True, help="With --apply: apply revocations beyond the blast-radius guard.")
@click.option(
    "--max-revokes",
    type=click.IntRange(min=0),
    default=None,
    help="Revocations applied without --confirm (default: $RECONCILE_MAX_REVOKES, else 10 or 5% of the students).",
)
@LAST_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def reconcile(
    apply_: bool, grants_only: bool, confirm: bool, max_revokes: int | None, last: bool, as_json: bool
) -> None:
    """Compare Discord roles, ManyChat tags and classes with what the rules want; --apply fixes them."""
    from engine.reconcile.runs import last_run

    if (grants_only or confirm) and not apply_:
        raise click.UsageError("--grants-only and --confirm go with --apply")
    if last:
        show_last(last_run(worker_runtime()), none_yet="no reconcile run stored yet", as_json=as_json, text=_run_text)
        return
    reconcile_and_report(
        run_mode(apply_, grants_only), "cli", confirm=confirm, max_revokes=max_revokes, as_json=as_json
    )


def reconcile_and_report(
    mode: str,
    trigger: str,
    *,
    confirm: bool,
    max_revokes: int | None,
    as_json: bool,
    rules=None,
    extra: dict | None = None,
) -> None:
    """Run reconcile (against ``rules``, default the loaded ones) and print it; exit 3 when the guard holds."""
    from engine.reconcile import Busy, run_reconcile

    try:
        run_id, report, applied = run_reconcile(
            worker_runtime(),
            mode=mode,
            trigger=trigger,
            confirm=confirm,
            max_revokes=max_revokes,
            rules=rules,
            progress=progress_bar,
        )
    except Busy as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    if as_json:
        out = {"run_id": run_id, **report.to_dict(), "applied": applied.to_dict() if applied else None}
        click.echo(json.dumps({**(extra or {}), **out}, ensure_ascii=False))
    else:
        for line in report.summary():
            click.echo(line)
        click.echo(_applied_text(run_id, mode, report, applied))
    if applied is not None and applied.held:
        exit_held(f"  would revoke {change.line()}" for change in report.diff.revokes)


def _applied_text(run_id: int, mode: str, report, applied) -> str:
    if mode == "report":
        hint = "; engine reconcile --apply fixes it" if not report.diff.empty else ""
        return f"run {run_id}: report only{hint}"
    if applied is None:
        return f"run {run_id}: nothing to apply"
    if applied.held:
        return (
            f"run {run_id}: HELD by the blast-radius guard: {applied.revokes} revocation(s), more than "
            f"{applied.limit}; nothing applied (an alert was raised). If the rules are right: "
            "engine reconcile --apply --confirm"
        )
    return (
        f"run {run_id}: queued {applied.grants} grant(s) and {applied.revokes} revocation(s) as "
        f"{len(applied.events)} RECONCILE event(s); the worker runs them (engine events --type RECONCILE)"
    )


def _run_text(run: dict) -> str:
    lines = [
        f"run {run['id']} ({run['trigger']}, {run['mode']}): {run['status']}, started {run['started_at']}, "
        f"{run['students']} student(s)"
    ]
    for product, counts in (run.get("counts") or {}).items():
        order = ("missing", "extra", "not_in_server", "subscribers_not_found")
        lines.append(f"  {product}: " + ", ".join(f"{k.replace('_', ' ')} {counts.get(k, 0)}" for k in order))
    for note in (run.get("diff") or {}).get("notes", []):
        lines.append(f"  note: {note}")
    if run.get("applied"):
        lines.append("  applied: " + ", ".join(f"{k} {v}" for k, v in run["applied"].items() if k != "events"))
    if run.get("error"):
        lines.append(f"  error: {run['error']}")
    return "\n".join(lines)
