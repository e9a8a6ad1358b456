"""The ``engine`` command. Heavy imports stay inside commands: ``check`` must start fast."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import click

RULES_OPTION = click.option(
    "--rules",
    "rules_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Rules directory (default: $RULES_DIR or ./rules).",
)


def _rules_dir(rules_dir: Path | None) -> Path:
    import os

    return rules_dir or Path(os.environ.get("RULES_DIR", "rules"))


def _load_or_exit(rules_dir: Path):
    from engine.rules import check_rules

    rules, problems = check_rules(rules_dir)
    if problems:
        for problem in problems:
            click.echo(str(problem), err=True)
        click.echo(f"{len(problems)} error(s) in {rules_dir}", err=True)
        sys.exit(1)
    return rules


def _configure_logging() -> None:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("transitions").setLevel(logging.WARNING)  # it logs every callback at INFO


@click.group()
def main() -> None:
    """Student lifecycle rules engine: Hotmart -> Discord, ManyChat, classes."""


@main.command()
@RULES_OPTION
def check(rules_dir: Path | None) -> None:
    """Validate the rules; exit 1 listing every error as file:line: message."""
    rules_dir = _rules_dir(rules_dir)
    rules = _load_or_exit(rules_dir)
    click.echo(
        f"ok: {len(rules.files)} files, {len(rules.products)} products, "
        f"{len(rules.states)} states, {len(rules.transitions)} transitions"
    )


@main.command("dry-run")
@click.argument("event_file", type=click.Path(path_type=Path))
@RULES_OPTION
@click.option("--state", default=None, help="Current state of the membership (default: initial).")
@click.option("--linked/--not-linked", default=False, help="Whether the student linked Discord.")
@click.option("--previous-discord-id", default=None, help="For DISCORD_LINKED: the account linked before.")
@click.option("--now", "now_text", default=None, help="ISO time to decide at (default: now).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def dry_run(
    event_file: Path,
    rules_dir: Path | None,
    state: str | None,
    linked: bool,
    previous_discord_id: str | None,
    now_text: str | None,
    as_json: bool,
) -> None:
    """Show what EVENT_FILE (a Hotmart payload or an internal event) would do. Runs nothing."""
    try:
        body = json.loads(event_file.read_bytes())
    except (OSError, ValueError) as exc:
        click.echo(f"error: cannot read {event_file}: {exc}", err=True)
        sys.exit(2)
    try:
        now = datetime.fromisoformat(now_text) if now_text else datetime.now(UTC)
    except ValueError:
        click.echo(f"error: --now {now_text!r} is not an ISO date", err=True)
        sys.exit(2)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    rules = _load_or_exit(_rules_dir(rules_dir))
    if state is not None and state not in rules.states:
        click.echo(f"error: unknown state {state!r} (states: {', '.join(rules.states)})", err=True)
        sys.exit(2)

    from engine.dryrun import dry_run as run

    result = run(body, rules, state=state, linked=linked, now=now, previous_discord_id=previous_discord_id)
    if as_json:
        click.echo(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
    else:
        click.echo(result.trace())


@main.command()
@RULES_OPTION
def graph(rules_dir: Path | None) -> None:
    """Print the lifecycle as a mermaid stateDiagram-v2."""
    from engine.graph import mermaid

    click.echo(mermaid(_load_or_exit(_rules_dir(rules_dir))), nl=False)


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
@click.option(
    "--worker/--no-worker",
    default=None,
    help="Run a worker inside the API process (default: yes without REDIS_URL, the embedded setup).",
)
@click.option("--threads", default=2, show_default=True, help="Worker threads for the in-process worker.")
def serve(host: str, port: int, worker: bool | None, threads: int) -> None:
    """Run the API (webhooks + admin); migrations are applied first."""
    import uvicorn

    from engine.api.app import create_app
    from engine.db.migrate import upgrade
    from engine.settings import get_settings

    _configure_logging()
    settings = get_settings()
    upgrade(settings)
    from engine.worker import huey, runtime

    app = create_app(runtime(), queue_check=huey.pending_count)
    consumer = None
    if worker if worker is not None else not settings.redis_url:
        consumer = huey.create_consumer(workers=threads, worker_type="thread", periodic=True)
        consumer.start()
    try:
        uvicorn.run(app, host=host, port=port, log_level="info")
    finally:
        if consumer is not None:
            consumer.stop(graceful=True)


@main.command()
@click.option("--threads", default=4, show_default=True, help="Worker threads.")
def worker(threads: int) -> None:
    """Run a Huey worker: processes events, retries and timers."""
    _configure_logging()
    from engine.worker import huey, runtime

    runtime()  # fail fast on invalid rules or settings
    huey.create_consumer(workers=threads, worker_type="thread", periodic=True).run()


@main.command()
def bot() -> None:
    """Run the Discord bot: /registrar and member joins (needs DISCORD_BOT_TOKEN, DISCORD_GUILD_ID)."""
    from bot.main import run

    run()


if __name__ == "__main__":  # pragma: no cover
    main()
