"""Commands an admin runs on a live install: doctor, events, student, retry, replay, status,
admin-user. Those on the database read their input, call :mod:`engine.service` and print its
answer: no query here."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

import click

from engine.cli.base import database_session, main, parse_since, read_settings
from engine.cli.errors import require_local_database
from engine.statuses import REPLAYABLE_EVENT_STATUSES, EventStatus


@main.command()
@click.option(
    "--discord", "discord", flag_value=True, default=None, help="Check Discord even if DISCORD_ENABLED is off."
)
@click.option(
    "--manychat", "manychat", flag_value=True, default=None, help="Check ManyChat even if MANYCHAT_ENABLED is off."
)
@click.option(
    "--course",
    "course",
    flag_value=True,
    default=None,
    help="Check the course platform's webhook even if COURSE_WEBHOOK_ENABLED is off.",
)
@click.option(
    "--hotmart",
    "hotmart",
    flag_value=True,
    default=None,
    help="Check the Hotmart API credentials even if HOTMART_SYNC_ENABLED is off.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def doctor(
    discord: bool | None, manychat: bool | None, course: bool | None, hotmart: bool | None, as_json: bool
) -> None:
    """Preflight before going live: one line per check (ok / warn / FAIL); exit 1 on any FAIL."""
    from engine.doctor import as_dicts, failed, preflight
    from engine.rules import check_rules
    from engine.settings import ToolSettings

    settings = ToolSettings()  # a missing secret is one of its FAIL lines, not a refusal to run
    rules, problems = check_rules(settings.rules_dir)
    checks = preflight(settings, rules, problems, discord=discord, manychat=manychat, course=course, hotmart=hotmart)
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
                ("the course platform", course, settings.course_webhook_enabled),
                ("the Hotmart API", hotmart, settings.hotmart_sync_enabled),
            )
            if not (asked or flag)
        ]
        if skipped:
            click.echo(
                f"(not checked: {', '.join(skipped)} — its flag is off; "
                "pass --discord/--manychat/--course/--hotmart to check it)"
            )
    if failed(checks):
        sys.exit(1)


EVENT_STATUSES = tuple(status.value for status in EventStatus)


@main.command()
@click.option("--status", type=click.Choice(EVENT_STATUSES), default=None, help="Only events in this status.")
@click.option("--type", "event_type", default=None, help="Only this event type (e.g. PURCHASE_APPROVED).")
@click.option("--email", default=None, help="Only events of this student (case-insensitive).")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True, help="How many, newest first.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object, as GET /admin/events does.")
def events(status: str | None, event_type: str | None, email: str | None, limit: int, as_json: bool) -> None:
    """List events from the event log, newest first."""
    from engine.service.events import event_page

    settings = read_settings()
    with database_session(settings) as session:
        page = event_page(session, settings, status=status, type=event_type, email=email, limit=limit)
    items = page.items
    if as_json:
        out = {
            "items": [item.model_dump(mode="json") for item in items],
            "total": page.total,
            "limit": limit,
            "offset": 0,
        }
        click.echo(json.dumps(out, ensure_ascii=False, indent=2))
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
    click.echo(f"{len(table)} of {page.total} event(s)")


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
    from engine.pipeline.runtime import build_runtime
    from engine.service.retry import RetryRefused, retry_event
    from engine.settings import get_settings

    require_local_database(get_settings())
    rt = build_runtime(get_settings(), queue=engine.worker.task_queue())
    try:
        outcome = retry_event(rt, event_id, force=force, skipped=skipped, actor="cli")
    except (RetryRefused, LookupError) as exc:
        message = exc.args[0] if exc.args else str(exc)
        click.echo(f"error: {message.replace('(use force ', '(pass --force ')}", err=True)
        sys.exit(1)
    click.echo(f"event {event_id}: {outcome}")


@main.command()
@click.argument("event_ids", nargs=-1, type=int)
@click.option(
    "--status",
    type=click.Choice([status.value for status in REPLAYABLE_EVENT_STATUSES]),
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
    from engine.pipeline.runtime import build_runtime
    from engine.service.replays import RulesUnavailable, choose_events, replay_events, summarize
    from engine.settings import get_settings

    since = parse_since(since_text)
    rt = build_runtime(get_settings(), queue=engine.worker.task_queue())
    chosen = status or (None if event_ids else EventStatus.NEEDS_ATTENTION)
    try:
        ids = choose_events(rt, status=chosen, event_type=event_type, since=since, ids=event_ids)
    except RulesUnavailable as exc:
        click.echo(f"error: invalid rules, nothing replayed: {exc}", err=True)
        sys.exit(1)
    try:
        with click.progressbar(length=len(ids), label="replaying", file=sys.stderr, show_pos=True) as bar:
            results = replay_events(
                rt, ids, dry_run=dry, actor="cli", process_now=True, on_each=lambda _: bar.update(1)
            )
    except LookupError as exc:
        click.echo(f"error: {exc.args[0]}", err=True)
        sys.exit(1)
    summary = summarize(results)
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
    from engine.pipeline.rules_repository import RulesRepository
    from engine.service.status import event_backlog
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
    try:
        with database_session(settings) as session:
            backlog = event_backlog(session)
    except Exception as exc:  # noqa: BLE001
        click.echo(f"database   error: {type(exc).__name__}: {exc}".splitlines()[0])
        sys.exit(1)
    oldest = backlog.oldest
    if oldest is None:
        click.echo("oldest     no unprocessed event")
    else:
        age = datetime.now(UTC) - oldest.received_at
        click.echo(
            f"oldest     event {oldest.id} {oldest.type or '-'} {oldest.status} since "
            f"{oldest.received_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC ({int(age.total_seconds())} s ago)"
        )
    click.echo("events     " + ", ".join(f"{count} {name}" for name, count in backlog.counts.items()))
    click.echo(f"alerts     {backlog.open_alerts} open")
    if repository.load_error is not None:
        sys.exit(1)


@main.command("admin-user")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin (one line) instead of asking.")
def admin_user(name: str, password_stdin: bool) -> None:
    """Print an admin page operator's ADMIN_USERS entry (NAME:scrypt$...): the password is hashed,
    never stored. Add the line to ADMIN_USERS (comma separated) or to ADMIN_USERS_FILE."""
    from engine.service.operators import hash_secret

    if not name or any(c in name for c in ":,#\n") or name != name.strip() or len(name) > 100:
        raise click.BadParameter("a name of up to 100 characters, without ':', ',', '#' or spaces around it")
    if password_stdin:
        secret = sys.stdin.readline().rstrip("\n")
    else:
        secret = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(secret) < 12:
        raise click.BadParameter("at least 12 characters (a passphrase is easiest to remember)")
    click.echo(f"{name}:{hash_secret(secret)}")
