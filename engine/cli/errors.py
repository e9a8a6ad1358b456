"""How the ``engine`` command fails: one line ``error: ...`` (one per rules error) and a non-zero
exit code, no traceback.

The click group of ``engine/cli/base.py`` uses :class:`EngineGroup`; commands raise whatever they
raise and the group turns the failures an operator can fix (settings, database, files, queue)
into one line that says what to do. ``ENGINE_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

# Exit code of a failure an operator fixes (settings, database, files); click uses 2 for usage.
EXIT_ERROR = 1


class CommandError(click.ClickException):
    """A failure the command explains itself, printed as ``error: message``."""

    exit_code = EXIT_ERROR

    def show(self, file=None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def describe(exc: BaseException) -> str:
    """One line for an exception escaping a command."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        return "invalid settings: " + "; ".join(_setting_problem(error) for error in exc.errors())
    sqlalchemy_exc = sys.modules.get("sqlalchemy.exc")
    if sqlalchemy_exc is not None and isinstance(exc, sqlalchemy_exc.DBAPIError):
        return _database_problem(exc)
    alembic_util = sys.modules.get("alembic.util.exc")
    if alembic_util is not None and isinstance(exc, alembic_util.CommandError):
        return f"migrations: {exc}"
    redis_exceptions = sys.modules.get("redis.exceptions")
    if redis_exceptions is not None and isinstance(exc, redis_exceptions.ConnectionError):
        return f"cannot reach Redis (REDIS_URL): {_first_line(exc)}"
    if isinstance(exc, OSError) and exc.filename:
        return f"cannot use {exc.filename}: {exc.strerror or exc}"
    return f"{type(exc).__name__}: {_first_line(exc)} (ENGINE_DEBUG=1 shows the traceback)"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _setting_problem(error: dict) -> str:
    # Only the variable's name and the reason: pydantic's own text repeats the input (secrets).
    name = "_".join(str(part) for part in error.get("loc", ())).upper()
    message = str(error.get("msg", "")).removeprefix("Value error, ")
    return f"{name}: {message}" if name else message


def _database_problem(exc) -> str:
    cause = _first_line(exc.orig) if getattr(exc, "orig", None) is not None else _first_line(exc)
    lowered = cause.lower()
    if "no such table" in lowered or ("relation" in lowered and "does not exist" in lowered):
        return f"the database has no tables yet ({cause}); run `engine migrate`"
    return f"database (DATABASE_URL): {cause}"


class EngineGroup(click.Group):
    """Turns any failure of a subcommand into ``error: ...`` and exit code 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit, KeyboardInterrupt):
            raise
        except Exception as exc:
            if os.environ.get("ENGINE_DEBUG"):
                raise
            rules_loader = sys.modules.get("engine.rules.loader")
            if rules_loader is not None and isinstance(exc, rules_loader.RulesError):
                # Invalid rules: one line per error, as `engine check` lists them.
                for problem in exc.problems:
                    click.echo(f"error: {problem}", err=True)
                click.echo(f"{len(exc.problems)} error(s) in the rules: run `engine check`", err=True)
                ctx.exit(EXIT_ERROR)
            click.echo(f"error: {describe(exc)}", err=True)
            ctx.exit(EXIT_ERROR)


def require_local_database(settings) -> None:
    """With no DATABASE_URL the database is VAR_DIR/engine.db: refuse to create one by accident.

    Commands that only read or change existing data (events, retry, import-students...) call
    this, so that one run outside the project directory says where it looked instead of leaving
    a stray var/engine.db behind. ``engine migrate`` and ``engine serve`` create it.
    """
    if settings.database_url:
        return
    path = (Path(settings.var_dir) / "engine.db").resolve()
    if not path.is_file():
        raise CommandError(
            f"no database: DATABASE_URL is not set and {path} does not exist (looked in VAR_DIR={settings.var_dir}); "
            "set DATABASE_URL or VAR_DIR, run from the project directory, or create it with `engine migrate`"
        )


def require_rules_dir(rules_dir: Path, *, explicit: bool) -> None:
    """The default ``./rules`` is missing: say where it looked (an explicit path is reported by check)."""
    if explicit or rules_dir.is_dir():
        return
    raise CommandError(
        f"no rules directory at {rules_dir.resolve()} (looked in the current directory); "
        "pass --rules DIR, set RULES_DIR, or run from the project directory"
    )
