"""The ``engine`` command. Heavy imports stay inside commands: ``check`` must start fast."""

from __future__ import annotations

import json
import os
import re
import sys
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import click

from engine.cli_errors import CommandError, EngineGroup, require_local_database, require_rules_dir
from engine.statuses import EventStatus

RULES_OPTION = click.option(
    "--rules",
    "rules_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Rules directory (default: $RULES_DIR or ./rules).",
)


def _rules_dir(rules_dir: Path | None) -> Path:
    import os

    explicit = rules_dir is not None or bool(os.environ.get("RULES_DIR"))
    rules_dir = rules_dir or Path(os.environ.get("RULES_DIR") or "rules")
    require_rules_dir(rules_dir, explicit=explicit)
    return rules_dir


def _load_or_exit(rules_dir: Path):
    from engine.rules import check_rules
    from engine.rules.translate import problem_line, summary

    rules, problems = check_rules(rules_dir)
    if problems:
        for problem in problems:  # in $ENGINE_LANG (pt-BR) when asked
            click.echo(problem_line(problem), err=True)
        click.echo(summary(len(problems), rules_dir), err=True)
        sys.exit(1)
    return rules


def _service_settings():
    """The settings of a command that runs the service; first, the rules must be where it looks."""
    from engine.settings import get_settings

    settings = get_settings()
    require_rules_dir(settings.rules_dir, explicit=settings.rules_dir != Path("rules"))
    return settings


def _loaded_version(rt) -> str | None:
    """The rules version a process runs (None while none could be loaded): its heartbeat reports it."""
    return rt.rules.version if rt.rules.available else None


def _configure_logging(settings) -> None:
    from engine.logs import configure_logging

    configure_logging(settings.logs_as)


@click.group(cls=EngineGroup)
@click.version_option(package_name="lifecycle-engine", prog_name="engine")
def main() -> None:
    """Student lifecycle rules engine: Hotmart -> Discord, ManyChat, classes."""


@main.command()
@RULES_OPTION
@click.option("--strict", is_flag=True, help="Fail (exit 1) on warnings too: transitions no rule test covers.")
@click.option(
    "--database",
    "with_database",
    is_flag=True,
    help="Also compare the rules with the live database (DATABASE_URL): states, products and timer "
    "events that memberships or pending timers use but the rules no longer define.",
)
def check(rules_dir: Path | None, strict: bool, with_database: bool) -> None:
    """Validate the rules; exit 1 listing every error as file:line: message."""
    from engine.ruletests import coverage_warnings

    rules_dir = _rules_dir(rules_dir)
    _note_ignored(rules_dir)
    rules = _load_or_exit(rules_dir)
    warnings = coverage_warnings(rules, rules_dir)
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(
        f"ok: {len(rules.files)} files, {len(rules.products)} products, "
        f"{len(rules.states)} states, {len(rules.transitions)} transitions"
        + (f", {len(warnings)} warning(s)" if warnings else "")
    )
    if with_database:
        _check_database(rules)
    if strict and warnings:
        sys.exit(1)


def _read_settings():
    """The settings of a command that reads the database and serves nothing: no secret needed."""
    from engine.settings import ToolSettings

    settings = ToolSettings()
    require_local_database(settings)
    return settings


@contextmanager
def _database_session(settings=None):
    from engine.db.session import session_factory

    with session_factory(settings or _read_settings())() as session:
        yield session


def _check_database(rules) -> None:
    from engine.pipeline.rules_fit import check_database
    from engine.rules.translate import PORTUGUESE

    portuguese = os.environ.get("ENGINE_LANG", "").lower() in PORTUGUESE  # like the rules' own messages
    with _database_session() as session:
        fit = check_database(session, rules)
    for rename in fit.renames:
        click.echo(f"{'nota' if portuguese else 'note'}: {rename.text(portuguese)}")
    if fit.misfits:
        for misfit in fit.misfits:
            click.echo(misfit.line_text(portuguese), err=True)
        if portuguese:
            click.echo(f"{len(fit.misfits)} erro(s): o banco de dados usa o que as regras não definem mais", err=True)
        else:
            click.echo(f"{len(fit.misfits)} error(s): the database uses what the rules no longer define", err=True)
        sys.exit(1)
    if portuguese:
        click.echo(
            f"banco de dados ok: {fit.memberships} matrícula(s) e {fit.pending_timers} timer(s) pendente(s) "
            "condizem com as regras"
        )
    else:
        click.echo(f"database ok: {fit.memberships} memberships and {fit.pending_timers} pending timers fit the rules")


@main.command("test")
@RULES_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def rule_test(rules_dir: Path | None, as_json: bool) -> None:
    """Run the rule tests in RULES/tests/*.yaml (planner only, nothing sent); exit 1 on any failure."""
    from engine.ruletests import run_rule_tests

    rules_dir = _rules_dir(rules_dir)
    rules = _load_or_exit(rules_dir)
    report = run_rule_tests(rules, rules_dir)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "files": report.files,
                    "cases": report.cases,
                    "failures": [{"file": f.file, "line": f.line, "message": f.message} for f in report.failures],
                },
                ensure_ascii=False,
            )
        )
    else:
        for failure in report.failures:
            click.echo(str(failure), err=True)
        if report.files == 0:
            click.echo(f"no rule tests in {rules_dir}/tests (see the README: Changing the rules safely)")
        else:
            failed = f", {len(report.failures)} failure(s)" if report.failures else ""
            click.echo(f"{'FAILED' if failed else 'ok'}: {report.cases} cases in {report.files} files{failed}")
    if report.failures:
        sys.exit(1)


@main.command()
@click.option(
    "--rules",
    "candidate_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Candidate rules, compared with the loaded ones ($RULES_DIR).",
)
@click.option("--against", "git_ref", default=None, help="Compare $RULES_DIR with itself at this git ref (e.g. main).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--apply", "apply_", is_flag=True, help="Then hand the access diff to reconcile (same guard).")
@click.option("--confirm", is_flag=True, help="With --apply: apply revocations beyond the guard's limit.")
@click.option("--max-revokes", type=click.IntRange(0), default=None, help="With --apply: the guard's limit.")
def plan(
    candidate_dir: Path | None,
    git_ref: str | None,
    as_json: bool,
    apply_: bool,
    confirm: bool,
    max_revokes: int | None,
) -> None:
    """What a rules change does to the students already there: access gained or lost, dropped states, timers."""
    from engine.db.session import session_factory
    from engine.plan import GitRefError, plan_rules, rules_at_ref
    from engine.settings import ToolSettings

    if (candidate_dir is None) == (git_ref is None):
        raise click.UsageError("give either --rules DIR (candidate) or --against GIT_REF (baseline)")
    settings = ToolSettings()  # read-only: no secret needed
    require_local_database(settings)
    loaded_dir = _rules_dir(None)
    try:
        if git_ref is not None:
            with rules_at_ref(loaded_dir, git_ref) as baseline_dir:
                current = _load_or_exit(baseline_dir)
            candidate = _load_or_exit(loaded_dir)
        else:
            current, candidate = _load_or_exit(loaded_dir), _load_or_exit(candidate_dir)
    except GitRefError as exc:
        raise click.ClickException(f"cannot read the rules at {git_ref!r}: {exc}") from exc
    if confirm and not apply_:
        raise click.UsageError("--confirm goes with --apply")
    with session_factory(settings)() as session:
        result = plan_rules(session, current, candidate)
    if as_json and not apply_:
        click.echo(json.dumps(result.to_dict(), ensure_ascii=False))
    elif not as_json:
        click.echo(result.summary())
    if apply_:
        # The candidate's desired access against the real Discord, ManyChat and classes.
        _reconcile_and_report(
            "all",
            "plan",
            confirm=confirm,
            max_revokes=max_revokes,
            rules=candidate,
            as_json=as_json,
            extra={"plan": result.to_dict()} if as_json else None,
        )


@main.command("new-product")
@click.argument("key")
@click.option("--hotmart-id", required=True, help="The product's id in Hotmart (digits).")
@click.option("--subscription", is_flag=True, help="A subscription (default: a one-time purchase).")
@click.option("--name", default=None, help="The name students read (default: from KEY).")
@click.option("--role", "roles", multiple=True, help="A Discord role id it grants (repeatable).")
@click.option("--tag", default=None, help="Its ManyChat tag, added to the catalog (default: aluno-KEY; '' for none).")
@RULES_OPTION
def new_product(
    key: str,
    hotmart_id: str,
    subscription: bool,
    name: str | None,
    roles: tuple[str, ...],
    tag: str | None,
    rules_dir: Path | None,
) -> None:
    """Write rules/products/KEY.yaml with every flow the lifecycle uses, then run the checks."""
    from engine.newproduct import ScaffoldRefused, write_product, write_rule_test

    rules_dir = _rules_dir(rules_dir)
    rules = _load_or_exit(rules_dir)
    try:
        scaffold = write_product(
            rules, rules_dir, key, hotmart_id, subscription=subscription, name=name, roles=roles, tag=tag
        )
    except ScaffoldRefused as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo(f"wrote {scaffold.product_file}")
    if scaffold.catalog_note:
        click.echo(scaffold.catalog_note)
    rules = _load_or_exit(rules_dir)
    test_file = write_rule_test(rules, rules_dir, key)
    if test_file is not None:
        click.echo(f"wrote {test_file} (a rule test: engine test)")
    todo = [flow for flow in scaffold.flows if flow not in scaffold.optional_flows]
    if todo:
        click.echo(
            f"next: paste the ManyChat flow namespace of {', '.join(todo)} in {scaffold.product_file.name} "
            "(until then each is `none`: the step is skipped)"
        )
    if not roles:
        click.echo("next: list the Discord role ids it grants under access: discord_roles (in quotes)")
    click.echo(f"$ engine check --rules {rules_dir}")
    ctx = click.get_current_context()
    ctx.invoke(check, rules_dir=rules_dir, strict=False)


def _note_ignored(rules_dir: Path) -> None:
    from engine.rules.files import ignored_entries

    for entry in ignored_entries(rules_dir):
        click.echo(
            f"note: {rules_dir.name}/{entry} ignored: only {rules_dir.name}/*.yaml and "
            f"{rules_dir.name}/products/*.yaml are rules",
            err=True,
        )


@main.command("dry-run")
@click.argument("event_file", type=click.Path(path_type=Path), required=False)
@click.option(
    "--event",
    "event_id",
    type=int,
    default=None,
    help="A stored event (its id in the event log) instead of a file: planned with the student's real "
    "state, link and timers, and compared with what was decided at the time.",
)
@RULES_OPTION
@click.option("--state", default=None, help="Current state of the membership (default: initial).")
@click.option("--linked/--not-linked", default=None, help="Whether the student linked Discord.")
@click.option("--previous-discord-id", default=None, help="For DISCORD_LINKED: the account linked before.")
@click.option("--now", "now_text", default=None, help="ISO time to decide at (default: now).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def dry_run(
    event_file: Path | None,
    event_id: int | None,
    rules_dir: Path | None,
    state: str | None,
    linked: bool | None,
    previous_discord_id: str | None,
    now_text: str | None,
    as_json: bool,
) -> None:
    """Show what EVENT_FILE (a Hotmart payload or an internal event), or stored event --event ID,
    would do. Runs nothing."""
    if (event_file is None) == (event_id is None):
        raise click.UsageError("give an EVENT_FILE or --event ID (one of them)")
    if event_id is not None and (state is not None or linked is not None or previous_discord_id is not None):
        raise click.UsageError("--event plans with the student's real state and link: drop --state/--linked")
    try:
        now = datetime.fromisoformat(now_text) if now_text else datetime.now(UTC)
    except ValueError:
        click.echo(f"error: --now {now_text!r} is not an ISO date", err=True)
        sys.exit(2)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    if event_id is not None:
        _dry_run_stored(event_id, _rules_dir(rules_dir), now, as_json)
        return
    try:
        body = json.loads(event_file.read_bytes())
    except (OSError, ValueError) as exc:
        click.echo(f"error: cannot read {event_file}: {exc}", err=True)
        sys.exit(2)
    rules = _load_or_exit(_rules_dir(rules_dir))
    if state is not None and state not in rules.states:
        click.echo(f"error: unknown state {state!r} (states: {', '.join(rules.states)})", err=True)
        sys.exit(2)

    from engine.dryrun import dry_run as run
    from engine.rules.files import rules_version

    result = run(body, rules, state=state, linked=bool(linked), now=now, previous_discord_id=previous_discord_id)
    result.rules_version = rules_version(_rules_dir(rules_dir))
    if as_json:
        click.echo(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
    else:
        click.echo(result.trace())


def _dry_run_stored(event_id: int, rules_dir: Path, now: datetime, as_json: bool) -> None:
    from engine.rules.files import rules_version
    from engine.service.replan import replan_event

    rules = _load_or_exit(rules_dir)
    with _database_session() as session:
        try:
            replan = replan_event(session, event_id, rules, now=now, rules_version=rules_version(rules_dir))
        except LookupError as exc:
            click.echo(f"error: {exc.args[0]}", err=True)
            sys.exit(2)
        out = json.dumps(replan.to_dict(), ensure_ascii=False, indent=2) if as_json else replan.trace()
    click.echo(out)


@main.command()
@RULES_OPTION
@click.option("--markdown", is_flag=True, help="Wrap the diagram in a ```mermaid fence, ready for a pull request.")
def graph(rules_dir: Path | None, markdown: bool) -> None:
    """Print the lifecycle as a mermaid stateDiagram-v2."""
    from engine.graph import mermaid

    diagram = mermaid(_load_or_exit(_rules_dir(rules_dir)))
    click.echo(f"```mermaid\n{diagram}```\n" if markdown else diagram, nl=False)


@main.command()
def migrate() -> None:
    """Apply the database migrations (Alembic) up to the latest."""
    from engine.db.migrate import upgrade
    from engine.settings import get_settings

    upgrade(get_settings())
    click.echo("database is up to date")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, help="API processes (uvicorn workers).")
@click.option(
    "--worker/--no-worker",
    default=None,
    help="Run a queue worker inside the API process (default: yes without REDIS_URL, the embedded setup).",
)
@click.option("--threads", default=2, show_default=True, help="Threads of the in-process queue worker.")
@click.option(
    "--access-log/--no-access-log",
    default=False,
    show_default=True,
    help="Log every HTTP request (the event log already records every webhook).",
)
def serve(host: str, port: int, workers: int, worker: bool | None, threads: int, access_log: bool) -> None:
    """Run the API (webhooks + admin); migrations are applied first."""
    import uvicorn

    from engine.db.migrate import upgrade

    settings = _service_settings()
    _configure_logging(settings)
    upgrade(settings)
    in_process = worker if worker is not None else not settings.redis_url
    if in_process and workers > 1:
        raise click.UsageError("an in-process worker needs --workers 1 (run `engine worker` separately)")
    # The app by its import string: the CLI starts the API, it does not import it.
    app = "engine.api.main:app_factory"
    # No websocket routes: ws="none" keeps uvicorn from loading a websocket implementation.
    options = {"factory": True, "host": host, "port": port, "access_log": access_log, "log_config": None, "ws": "none"}
    if workers > 1:
        _share_api_metrics(settings)
        # log_config=None: each process logs through engine.logs (app_factory configures it).
        uvicorn.run(app, workers=workers, **options)
        return
    from engine.pipeline.sweep import SweepLoop
    from engine.worker import huey, runtime

    rt = runtime()  # fail fast on invalid rules or settings, before the worker starts; the app reuses it
    consumer = sweeper = heartbeat = None
    if in_process:
        from engine.pipeline.heartbeat import HeartbeatThread

        consumer = huey.create_consumer(workers=threads, worker_type="thread", periodic=True)
        consumer.start()
        sweeper = SweepLoop(runtime, settings.timer_poll_seconds).start()
        heartbeat = HeartbeatThread(rt.sessions, settings.heartbeat_seconds, rules_version=lambda: _loaded_version(rt))
        heartbeat.start()
    try:
        uvicorn.run(app, **options)
    finally:
        if sweeper is not None:
            sweeper.stop()
        if heartbeat is not None:
            heartbeat.stop()
        if consumer is not None:
            consumer.stop(graceful=True)


def _share_api_metrics(settings) -> None:
    """Several API processes add up their webhook metrics through files (prometheus-client's
    multiprocess mode); a directory left by an earlier run is emptied first."""
    import os

    folder = Path(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or settings.var_dir / "prometheus")
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)


@main.command()
@click.option("--threads", default=4, show_default=True, help="Worker threads (main queue).")
@click.option(
    "--lane-threads",
    default=None,
    type=click.IntRange(0, 64),
    help="Threads of the ManyChat lane [default: MANYCHAT_LANE_THREADS, 8]; 0: no lane.",
)
def worker(threads: int, lane_threads: int | None) -> None:
    """Run a Huey worker: processes events, retries and timers (plus the ManyChat lane)."""
    settings = _service_settings()
    _configure_logging(settings)
    from functools import partial

    from engine.db.migrate import NotMigrated, wait_for_migrations
    from engine.db.session import check_connection_budget, worker_pool_size
    from engine.heartbeat import beat
    from engine.pipeline.alerts import notify_alerts
    from engine.pipeline.attention import report_rules_failure
    from engine.pipeline.heartbeat import HeartbeatThread
    from engine.pipeline.sweep import SweepLoop, resume_waiting_for_rules, sweep

    try:  # started beside a fresh database: wait for `engine migrate` / `engine serve`
        wait_for_migrations(settings, timeout=settings.migration_wait_seconds)
    except NotMigrated as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    lane_threads = settings.manychat_lane_threads if lane_threads is None else lane_threads
    if settings.database_pool_size is None:
        settings.database_pool_size = worker_pool_size(threads + lane_threads)

    import engine.worker as queue

    if lane_threads:
        queue.enable_lanes({"manychat"})
    rt = queue.runtime()
    HeartbeatThread(rt.sessions, settings.heartbeat_seconds, rules_version=lambda: _loaded_version(rt)).start()
    if not rt.rules.available:
        # Wait instead of crash-looping: events are held (needs_attention) and alerted, and
        # processed by themselves once valid rules load.
        click.echo(f"error: invalid rules, holding events until they load: {rt.rules.load_error}", err=True)

    def rules_changed() -> None:  # alert a broken version, run held events on a valid one
        report_rules_failure(rt)
        resume_waiting_for_rules(rt)
        notify_alerts(rt)

    rt.rules.watch(rt.settings.rules_reload_seconds, on_change=rules_changed)
    # Sweep once now rather than after the first interval, so held webhooks (HOTMART_ENABLED just
    # turned on) and overdue timers don't wait; then every TIMER_POLL_SECONDS.
    sweep(rt)
    check_connection_budget(settings, role="this worker")
    alive = partial(beat, settings.var_dir, "worker")  # read by the compose healthcheck
    alive()
    SweepLoop(queue.runtime, settings.timer_poll_seconds, on_success=alive).start()
    lanes = []
    if lane_threads:
        lane_huey = queue.get_queue().lanes["manychat"][0]
        lanes.append(lane_huey.create_consumer(workers=lane_threads, worker_type="thread"))
        lanes[-1].start()
    try:
        queue.get_huey().create_consumer(workers=threads, worker_type="thread", periodic=True).run()
    finally:
        for consumer in lanes:
            consumer.stop(graceful=True)


@main.command()
@click.option("--worker", "worker_only", is_flag=True, help="Check this host's worker heartbeat instead.")
def healthcheck(worker_only: bool) -> None:
    """Exit 0 when healthy, 1 otherwise (for container healthchecks).

    Default: the database accepts writes and the queue answers. --worker: this host's worker
    wrote its heartbeat less than WORKER_STALE_SECONDS ago.
    """
    from engine.pipeline.heartbeat import worker_name
    from engine.service.health import check_database_writable, check_queue, check_worker_heartbeat
    from engine.settings import get_settings

    settings = get_settings()
    if worker_only:
        checks = {"worker": lambda: check_worker_heartbeat(settings, name=worker_name())}
    else:
        from engine.worker import huey

        checks = {"database": lambda: check_database_writable(settings), "queue": lambda: check_queue(huey)}
    healthy = True
    for name, check in checks.items():
        try:
            check()
            click.echo(f"{name}: ok")
        except Exception as exc:  # noqa: BLE001 - reported, exit 1
            healthy = False
            click.echo(f"{name}: error: {exc}", err=True)
    sys.exit(0 if healthy else 1)


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
    _reconcile_and_report(mode, "cli", confirm=confirm, max_revokes=max_revokes, as_json=as_json)


def _reconcile_and_report(
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
    from contextlib import contextmanager

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


@main.command()
@click.argument("name", type=click.Choice(["worker", "bot"]))
@click.option("--max-age", type=float, default=None, help="Seconds (default: 3 x TIMER_POLL_SECONDS, at least 90).")
def heartbeat(name: str, max_age: float | None) -> None:
    """Exit 0 if the worker's or the bot's heartbeat is fresh (the compose healthcheck)."""
    from engine.heartbeat import age, heartbeat_path
    from engine.settings import ToolSettings

    settings = ToolSettings()
    limit = max_age if max_age is not None else max(3 * settings.timer_poll_seconds, 90.0)
    seconds = age(settings.var_dir, name)
    if seconds is None:
        raise CommandError(f"no heartbeat yet at {heartbeat_path(settings.var_dir, name).resolve()}")
    if seconds > limit:
        raise CommandError(f"{name} heartbeat is {seconds:.0f}s old (more than {limit:.0f}s)")
    click.echo(f"{name} alive: heartbeat {seconds:.0f}s ago")


@main.command()
def bot() -> None:
    """Run the Discord bot: /registrar and member joins (needs DISCORD_BOT_TOKEN, DISCORD_GUILD_ID)."""
    _service_settings()
    from bot.main import run

    run()


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

    settings = _read_settings()
    with _database_session(settings) as session:
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


if __name__ == "__main__":  # pragma: no cover
    main()
