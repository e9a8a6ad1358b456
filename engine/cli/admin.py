"""Commands an admin runs on a live install: doctor, reconcile, events, student, retry, replay,
status, import-students."""

from __future__ import annotations

import json
import re
import sys
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import click

from engine.cli.base import database_session, main, read_settings
from engine.cli.errors import require_local_database, require_rules_dir
from engine.statuses import EventStatus


@main.command()
@click.option(
    "--discord", "discord", flag_value=True, default=None, help="Check Discord even if DISCORD_ENABLED is off."
)
@click.option(
    "--manychat", "manychat", flag_value=True, default=None, help="Check ManyChat even if MANYCHAT_ENABLED is off."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def doctor(discord: bool | None, manychat: bool | None, as_json: bool) -> None:
    """Preflight before going live: one line per check (ok / warn / FAIL); exit 1 on any FAIL."""
    from engine.doctor import as_dicts, failed, preflight
    from engine.rules import check_rules
    from engine.settings import ToolSettings

    settings = ToolSettings()  # a missing secret is one of its FAIL lines, not a refusal to run
    rules, problems = check_rules(settings.rules_dir)
    checks = preflight(settings, rules, problems, discord=discord, manychat=manychat)
    if as_json:
        click.echo(json.dumps({"ok": not failed(checks), "checks": as_dicts(checks)}, ensure_ascii=False))
    else:
        for check in checks:
            click.echo(check.line())
        skipped = [
            name
            for name, asked, flag in (
                ("Discord", discord, settings.discord_enabled),
                ("ManyChat", manychat, settings.manychat_enabled),
            )
            if not (asked or flag)
        ]
        if skipped:
            click.echo(f"(not checked: {', '.join(skipped)} — its flag is off; pass --discord/--manychat to check it)")
    if failed(checks):
        sys.exit(1)


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
@click.option("--last", is_flag=True, help="Show the last stored run instead of running one.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def reconcile(
    apply_: bool, grants_only: bool, confirm: bool, max_revokes: int | None, last: bool, as_json: bool
) -> None:
    """Compare Discord roles, ManyChat tags and classes with what the rules want; --apply fixes them."""
    import engine.worker
    from engine.pipeline.runtime import build_runtime
    from engine.reconcile.runs import last_run
    from engine.settings import get_settings

    if (grants_only or confirm) and not apply_:
        raise click.UsageError("--grants-only and --confirm go with --apply")
    if last:
        rt = build_runtime(get_settings(), enqueue=engine.worker.enqueue_event)
        run = last_run(rt)
        if run is None:
            click.echo("no reconcile run stored yet")
            sys.exit(1)
        click.echo(json.dumps(run, ensure_ascii=False, default=str) if as_json else _run_text(run))
        return
    mode = "report" if not apply_ else "grants" if grants_only else "all"
    reconcile_and_report(mode, "cli", confirm=confirm, max_revokes=max_revokes, as_json=as_json)


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
    import engine.worker
    from engine.pipeline.runtime import build_runtime
    from engine.reconcile import Busy, run_reconcile
    from engine.settings import get_settings

    rt = build_runtime(get_settings(), enqueue=engine.worker.enqueue_event)
    try:
        run_id, report, applied = run_reconcile(
            rt,
            mode=mode,
            trigger=trigger,
            confirm=confirm,
            max_revokes=max_revokes,
            rules=rules,
            progress=_progress_bar,
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
        for change in report.diff.revokes:
            click.echo(f"  would revoke {change.line()}", err=True)
        sys.exit(3)


def _progress_bar(label: str, total: int):
    """click's progress bar on stderr (hidden when stderr is not a terminal); total 0: a counter."""
    import itertools

    @contextmanager
    def bar():
        # No total known (Discord's member list): an endless iterable makes click show a counter.
        source = {"length": total} if total else {"iterable": itertools.repeat(None)}
        with click.progressbar(label=label, file=sys.stderr, **source) as progress:
            yield progress.update

    return bar()


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


EVENT_STATUSES = tuple(status.value for status in EventStatus)


@main.command()
@click.option("--status", type=click.Choice(EVENT_STATUSES), default=None, help="Only events in this status.")
@click.option("--type", "event_type", default=None, help="Only this event type (e.g. PURCHASE_APPROVED).")
@click.option("--email", default=None, help="Only events of this student (case-insensitive).")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True, help="How many, newest first.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object, as GET /admin/events does.")
def events(status: str | None, event_type: str | None, email: str | None, limit: int, as_json: bool) -> None:
    """List events from the event log, newest first."""
    from engine.db.session import session_factory
    from engine.service.views import Redactor, event_summary, query_events
    from engine.settings import ToolSettings

    settings = ToolSettings()
    require_local_database(settings)
    with session_factory(settings)() as session:
        rows, total = query_events(session, status=status, type=event_type, email=email, limit=limit)
    redact = Redactor.for_settings(settings)
    items = [event_summary(event, redact) for event in rows]
    if as_json:
        page = {"items": [item.model_dump(mode="json") for item in items], "total": total, "limit": limit, "offset": 0}
        click.echo(json.dumps(page, ensure_ascii=False, indent=2))
        return
    header = ("ID", "RECEIVED", "TYPE", "STATUS", "EMAIL", "PRODUCT", "REASON")
    table = [
        (
            str(item.id),
            item.received_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            item.type or "-",
            item.status,
            item.email or "-",
            item.product or "-",
            " ".join((item.reason or "").split())[:80],
        )
        for item in items
    ]
    widths = [max(len(row[i]) for row in (header, *table)) for i in range(len(header) - 1)]
    for row in (header, *table):
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        click.echo("  ".join([*cells, row[-1]]).rstrip())
    click.echo(f"{len(table)} of {total} event(s)")


@main.command()
@click.argument("email")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def student(email: str, as_json: bool) -> None:
    """A student's whole timeline: events (status, reason), transitions, steps and their results,
    grants, timers, alerts and history (replays, renames), in time order."""
    from engine.service.timeline import student_timeline

    settings = read_settings()
    with database_session(settings) as session:
        timeline = student_timeline(session, email, settings)
        if timeline is None:
            click.echo(f"error: student {email.strip().lower()} not found", err=True)
            sys.exit(1)
        out = json.dumps(timeline.to_dict(), ensure_ascii=False, indent=2) if as_json else "\n".join(timeline.lines())
    click.echo(out)


@main.command()
@click.argument("event_id", type=int)
@click.option("--force", is_flag=True, help="Resume even if a later event changed the membership since.")
@click.option("--skipped", is_flag=True, help="Also replay steps skipped while a connector's flag was off.")
def retry(event_id: int, force: bool, skipped: bool) -> None:
    """Retry a failed (or stuck) event from its failed step; replay a needs_attention one.

    An event a later one has overtaken (the membership changed since) is refused unless --force.
    """
    import engine.worker
    from engine.pipeline.admin import RetryRefused, retry_event
    from engine.pipeline.runtime import build_runtime
    from engine.settings import get_settings

    require_local_database(get_settings())
    rt = build_runtime(get_settings(), enqueue=engine.worker.enqueue_event)
    try:
        outcome = retry_event(rt, event_id, force=force, skipped=skipped, actor="cli")
    except (RetryRefused, LookupError) as exc:
        message = exc.args[0] if exc.args else str(exc)
        click.echo(f"error: {message.replace('(use force ', '(pass --force ')}", err=True)
        sys.exit(1)
    click.echo(f"event {event_id}: {outcome}")


def _parse_since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        since = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an ISO date (e.g. 2026-03-01)", param_hint="--since") from None
    return since if since.tzinfo else since.replace(tzinfo=UTC)


@main.command()
@click.argument("event_ids", nargs=-1, type=int)
@click.option(
    "--status",
    type=click.Choice(("needs_attention", "ignored", "failed", "processed", "rejected")),
    default=None,
    help="Replay the events in this status (default: needs_attention when no EVENT_IDS are named).",
)
@click.option("--type", "event_type", default=None, help="Only this event type (e.g. PURCHASE_APPROVED).")
@click.option("--since", "since_text", default=None, help="Only events received since this ISO date.")
@click.option("--dry-run", "dry", is_flag=True, help="Say what each replay would decide; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (results and summary).")
def replay(
    event_ids: tuple[int, ...],
    status: str | None,
    event_type: str | None,
    since_text: str | None,
    dry: bool,
    as_json: bool,
) -> None:
    """Re-run stored events against the current rules: all needs_attention ones, and any EVENT_IDS named.

    Each replay is recorded in the event's history (actor cli, the rules version)."""
    import engine.worker
    from engine.pipeline import replay as replays
    from engine.pipeline.processing import process_event
    from engine.pipeline.runtime import build_runtime
    from engine.settings import get_settings

    since = _parse_since(since_text)
    rt = build_runtime(get_settings(), enqueue=engine.worker.enqueue_event, schedule_drain=engine.worker.schedule_drain)
    if not rt.rules.available:
        click.echo(f"error: invalid rules, nothing replayed: {rt.rules.load_error}", err=True)
        sys.exit(1)
    with rt.sessions() as session:
        ids = replays.select_events(
            session,
            status=status or (None if event_ids else "needs_attention"),
            event_type=event_type,
            since=since,
            ids=event_ids,
        )
    try:
        with click.progressbar(length=len(ids), label="replaying", file=sys.stderr, show_pos=True) as bar:
            if dry:
                results = []
                for event_id in ids:
                    results += replays.preview(rt, [event_id])
                    bar.update(1)
            else:
                results = replays.replay(rt, ids, actor="cli", process=process_event, on_each=lambda _: bar.update(1))
    except LookupError as exc:
        click.echo(f"error: {exc.args[0]}", err=True)
        sys.exit(1)
    summary = replays.summarize(results)
    if as_json:
        payload = {
            "dry_run": dry,
            "rules_version": rt.rules.version,
            "count": len(results),
            "summary": summary,
            "items": [r.to_dict() for r in results],
        }
        click.echo(json.dumps(payload, ensure_ascii=False, indent=2))
        return
    verb = "would become" if dry else "->"
    for r in results:
        if r.refused:
            click.echo(f"event {r.event_id} {r.type or '-'}: {r.before}, not replayed: {r.reason}")
            continue
        click.echo(
            f"event {r.event_id} {r.type or '-'}: {r.before} {verb} {r.after}" + (f" ({r.reason})" if r.reason else "")
        )
    done = ", ".join(f"{count} {outcome}" for outcome, count in summary.items()) or "nothing to replay"
    click.echo(f"{'dry run: ' if dry else ''}{len(results)} event(s) with rules {rt.rules.version}: {done}")


@main.command()
def status() -> None:
    """Rules version and last load error (as /healthz), queue depth, the oldest unprocessed event."""
    from sqlalchemy import func, select

    from engine.db.models import Alert, Event
    from engine.pipeline.rules_repository import RulesRepository
    from engine.settings import ToolSettings

    settings = ToolSettings()  # read-only: no secret needed
    require_local_database(settings)
    repository = RulesRepository(settings.rules_dir, strict=False)
    click.echo(f"rules      {repository.version or '(none loaded)'}  ({settings.rules_dir})")
    click.echo(f"rules      {'ok' if repository.load_error is None else 'error: ' + repository.load_error}")
    try:
        from engine.worker import huey

        click.echo(f"queue      {huey.pending_count()} task(s) waiting")
    except Exception as exc:  # noqa: BLE001 - status reports an outage, it does not crash on one
        click.echo(f"queue      error: {type(exc).__name__}: {exc}".splitlines()[0])
    from engine.db.session import session_factory

    unprocessed = ("received", "held", "processing", "retrying")
    try:
        with session_factory(settings)() as session:
            oldest = session.execute(
                select(Event.id, Event.type, Event.status, Event.received_at)
                .where(Event.status.in_(unprocessed))
                .order_by(Event.received_at, Event.id)
                .limit(1)
            ).first()
            counts = dict(
                session.execute(
                    select(Event.status, func.count())
                    .where(Event.status.in_((*unprocessed, "needs_attention", "failed")))
                    .group_by(Event.status)
                ).all()
            )
            open_alerts = session.scalar(select(func.count()).select_from(Alert).where(Alert.acknowledged_at.is_(None)))
    except Exception as exc:  # noqa: BLE001
        click.echo(f"database   error: {type(exc).__name__}: {exc}".splitlines()[0])
        sys.exit(1)
    if oldest is None:
        click.echo("oldest     no unprocessed event")
    else:
        age = datetime.now(UTC) - oldest.received_at
        click.echo(
            f"oldest     event {oldest.id} {oldest.type or '-'} {oldest.status} since "
            f"{oldest.received_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC ({int(age.total_seconds())} s ago)"
        )
    click.echo(
        "events     "
        + ", ".join(f"{counts.get(name, 0)} {name}" for name in (*unprocessed, "needs_attention", "failed"))
    )
    click.echo(f"alerts     {open_alerts} open")
    if repository.load_error is not None:
        sys.exit(1)


@main.command("import-students")
@click.argument("csv_file", type=click.Path(path_type=Path))
@click.option(
    "--adopt-access",
    is_flag=True,
    help="Record each membership's roles, tags and classes as granted by the engine (a later "
    "refund or churn removes them) and enroll in the product's classes.",
)
@click.option("--dry-run", "check_only", is_flag=True, help="Check the file and report; change nothing.")
def import_students(csv_file: Path, adopt_access: bool, check_only: bool) -> None:
    """One-time seed of existing students: CSV columns email,product[,state,name,phone,discord_id]."""
    from engine.db.session import session_factory
    from engine.pipeline.rules_repository import RulesRepository
    from engine.pipeline.seed import read_rows, seed
    from engine.settings import get_settings

    settings = get_settings()
    require_rules_dir(settings.rules_dir, explicit=settings.rules_dir != Path("rules"))
    require_local_database(settings)
    rules = RulesRepository(settings.rules_dir).rules
    try:
        text = csv_file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        click.echo(f"error: cannot read {csv_file}: {exc}", err=True)
        sys.exit(2)
    rows, errors = read_rows(text, rules, source=str(csv_file))
    session = session_factory(settings)()
    try:
        # The rows that read well are checked against the database too, so every problem shows at once.
        # Shown on a terminal only: a log or a pipe gets the summary line, not a stray label.
        with click.progressbar(
            length=len(rows), label="importing", file=sys.stderr, hidden=not sys.stderr.isatty()
        ) as bar:
            report = seed(session, rows, rules, adopt_access=adopt_access, progress=bar.update, source=str(csv_file))
        errors += [f"{csv_file}:{error}" for error in report.errors]
        if errors:
            session.rollback()
            line = re.compile(rf"^{re.escape(str(csv_file))}:(\d+):")
            for error in sorted(errors, key=lambda e: int(m.group(1)) if (m := line.match(e)) else 0):
                click.echo(error, err=True)
            click.echo(f"{len(errors)} error(s); nothing imported", err=True)
            sys.exit(1)
        if check_only:
            session.rollback()
        else:
            session.commit()
    finally:
        session.close()
    verb = "would create" if check_only else "created"
    click.echo(
        f"{verb} {report.students_created} student(s) and {report.memberships_created} membership(s) "
        f"({report.memberships_existing} already there, {report.grants_recorded} grant(s) recorded)"
    )
