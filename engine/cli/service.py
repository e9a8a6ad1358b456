"""Commands that run the service: migrate, serve, worker, bot, and their health checks."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from engine.cli.base import main
from engine.cli.errors import CommandError, require_rules_dir


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
    from engine.worker import huey, runtime, start_consumer, task_queue

    short_delays = task_queue().short_delays
    rt = runtime()  # fail fast on invalid rules or settings, before the worker starts; the app reuses it
    consumer = sweeper = heartbeat = None
    try:
        if in_process:
            from engine.pipeline.worker_heartbeat import HeartbeatThread

            _stop_signals_exit()
            consumer = start_consumer(huey, workers=threads, worker_type="thread", periodic=True)
            short_delays.start()
            sweeper = SweepLoop(runtime, settings.timer_poll_seconds).start()
            heartbeat = HeartbeatThread(
                rt.sessions, settings.heartbeat_seconds, rules_version=lambda: _loaded_version(rt)
            )
            heartbeat.start()
        uvicorn.run(app, **options)
    finally:
        rt.stopping.set()
        short_delays.flush()
        if sweeper is not None:
            sweeper.stop()
        if heartbeat is not None:
            heartbeat.stop()
        if consumer is not None:
            consumer.shutdown_timeout = settings.worker_stop_seconds  # then the process exits anyway
            consumer.stop(graceful=True)


def _stop_signals_exit() -> None:
    """SIGTERM and SIGINT end the command with SystemExit, so that its ``finally`` stops what it
    started gracefully: `engine serve`'s in-process worker while it starts (before uvicorn takes
    the signals) and after uvicorn's own shutdown, when uvicorn raises the signal again under the
    handler it found; `engine worker`'s ManyChat lane before the main consumer takes them."""
    import signal

    def stop(signum, frame) -> None:
        raise SystemExit(0)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop)


def _share_api_metrics(settings) -> None:
    """Several API processes add up their webhook metrics through files (prometheus-client's
    multiprocess mode); a directory left by an earlier run is emptied first."""

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
    # Until the main consumer takes the signals, a stop while starting (waiting for the
    # migrations, the first sweep) ends the worker cleanly instead of killing it.
    _stop_signals_exit()
    from functools import partial

    from engine.db.migrate import NotMigrated, wait_for_migrations
    from engine.db.session import check_connection_budget, worker_pool_size
    from engine.pipeline.alerts import notify_alerts
    from engine.pipeline.attention import report_rules_failure
    from engine.pipeline.sweep import SweepLoop, resume_waiting_for_rules, sweep
    from engine.pipeline.worker_heartbeat import HeartbeatThread
    from engine.worker.heartbeat_file import beat

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
    short_delays = queue.task_queue().short_delays
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

    def stopping() -> None:  # no thread waits on after a stop signal; no lane takes a new task
        rt.stopping.set()
        for consumer in lanes:
            consumer.stop_flag.set()
        short_delays.flush()  # settling webhooks not due yet: to Huey's schedule

    deadline = queue.StopDeadline(settings.worker_stop_seconds, on_begin=stopping)
    short_delays.start()
    try:
        if lane_threads:
            lane_huey = queue.get_queue().lanes["manychat"][0]
            lanes.append(queue.start_consumer(lane_huey, workers=lane_threads, worker_type="thread"))
        queue.StoppingConsumer(
            queue.get_huey(), deadline=deadline, workers=threads, worker_type="thread", periodic=True
        ).run()
    finally:
        deadline.begin()  # however the consumer ended: the process exits within WORKER_STOP_SECONDS
        for consumer in lanes:
            consumer.shutdown_timeout = deadline.left()
            consumer.stop(graceful=True)


@main.command()
@click.option("--worker", "worker_only", is_flag=True, help="Check this host's worker heartbeat instead.")
def healthcheck(worker_only: bool) -> None:
    """Exit 0 when healthy, 1 otherwise (for container healthchecks).

    Default: the database accepts writes and the queue answers. --worker: this host's worker
    wrote its heartbeat less than WORKER_STALE_SECONDS ago.
    """
    from engine.pipeline.worker_heartbeat import worker_name
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
@click.argument("name", type=click.Choice(["worker", "bot"]))
@click.option("--max-age", type=float, default=None, help="Seconds (default: 3 x TIMER_POLL_SECONDS, at least 90).")
def heartbeat(name: str, max_age: float | None) -> None:
    """Exit 0 if the worker's or the bot's heartbeat is fresh (the compose healthcheck)."""
    from engine.settings import ToolSettings
    from engine.worker.heartbeat_file import age, heartbeat_path

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
