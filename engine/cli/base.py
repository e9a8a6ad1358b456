"""The ``engine`` group and what its commands share: where the rules are, the read-only settings."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import click

from engine.cli.errors import EngineGroup, require_local_database, require_rules_dir

RULES_OPTION = click.option(
    "--rules",
    "rules_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Rules directory (default: $RULES_DIR or ./rules).",
)


@click.group(cls=EngineGroup)
@click.version_option(package_name="lifecycle-engine", prog_name="engine")
def main() -> None:
    """Student lifecycle rules engine: Hotmart -> Discord, ManyChat, classes."""


def resolve_rules_dir(rules_dir: Path | None) -> Path:
    """--rules, else $RULES_DIR, else ./rules; it must exist (the error says where it looked)."""
    explicit = rules_dir is not None or bool(os.environ.get("RULES_DIR"))
    rules_dir = rules_dir or Path(os.environ.get("RULES_DIR") or "rules")
    require_rules_dir(rules_dir, explicit=explicit)
    return rules_dir


def parse_since(text: str | None) -> datetime | None:
    """``--since``: an ISO date or date and time; no zone is UTC."""
    if text is None:
        return None
    try:
        since = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an ISO date (e.g. 2026-03-01)", param_hint="--since") from None
    return since if since.tzinfo else since.replace(tzinfo=UTC)


def load_rules_or_exit(rules_dir: Path):
    from engine.rules import check_rules
    from engine.rules.translate import problem_line, summary

    rules, problems = check_rules(rules_dir)
    if problems:
        for problem in problems:  # in $ENGINE_LANG (pt-BR) when asked
            click.echo(problem_line(problem), err=True)
        click.echo(summary(len(problems), rules_dir), err=True)
        sys.exit(1)
    return rules


def read_settings():
    """The settings of a command that reads the database and serves nothing: no secret needed."""
    from engine.settings import ToolSettings

    settings = ToolSettings()
    require_local_database(settings)
    return settings


@contextmanager
def database_session(settings=None):
    from engine.db.session import session_factory

    with session_factory(settings or read_settings())() as session:
        yield session


def progress_bar(label: str, total: int):
    """click's progress bar on stderr (hidden when stderr is not a terminal); total 0: a counter."""
    import itertools

    @contextmanager
    def bar():
        # No total known (Discord's member list): an endless iterable makes click show a counter.
        source = {"length": total} if total else {"iterable": itertools.repeat(None)}
        with click.progressbar(label=label, file=sys.stderr, **source) as progress:
            yield progress.update

    return bar()
