"""``engine import-students``: the one-time seed of the students a course already has, from a
CSV file or from Hotmart's API (``--from hotmart``). Reads its input, calls :mod:`engine.service`
and prints its answer: no query here."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from engine.cli.base import main
from engine.cli.errors import require_local_database, require_rules_dir


@main.command("import-students")
@click.argument("csv_file", type=click.Path(path_type=Path), required=False)
@click.option(
    "--from",
    "origin",
    type=click.Choice(["csv", "hotmart"]),
    default="csv",
    show_default=True,
    help="Where the students come from: a CSV file, or Hotmart's API (its active subscribers and paid buyers).",
)
@click.option(
    "--product",
    "products",
    multiple=True,
    metavar="KEY",
    help="With --from hotmart: only this product of the rules (repeatable; default every product sold on Hotmart).",
)
@click.option(
    "--discord-ids",
    type=click.Path(path_type=Path),
    metavar="FILE",
    help="With --from hotmart: a CSV with the import's columns (email and discord_id required; name, phone "
    "used too): those students are placed as linked.",
)
@click.option(
    "--onboard",
    is_flag=True,
    help="With --from hotmart: send each student who waits for the link the onboarding (the code's "
    "WhatsApp flow, its reminders) through the worker. Without it nobody is sent anything.",
)
@click.option(
    "--adopt-access",
    is_flag=True,
    help="Record each membership's roles, tags and classes as granted by the engine (a later "
    "refund or churn removes them) and enroll in the product's classes.",
)
@click.option("--dry-run", "check_only", is_flag=True, help="Check and report what would be imported; change nothing.")
def import_students(
    csv_file: Path | None,
    origin: str,
    products: tuple[str, ...],
    discord_ids: Path | None,
    onboard: bool,
    adopt_access: bool,
    check_only: bool,
) -> None:
    """One-time seed of existing students: from a CSV (columns email,product[,state,name,phone,discord_id])
    or from Hotmart (--from hotmart)."""
    from engine.settings import get_settings

    settings = get_settings()
    if origin == "hotmart":
        if csv_file is not None:
            raise click.UsageError("--from hotmart reads Hotmart, not a file (--discord-ids FILE joins one)")
        require_rules_dir(settings.rules_dir, explicit=settings.rules_dir != Path("rules"))
        require_local_database(settings)
        _import_from_hotmart(settings, products, discord_ids, onboard, adopt_access, check_only)
        return
    if products or discord_ids or onboard:
        raise click.UsageError("--product, --discord-ids and --onboard go with --from hotmart")
    if csv_file is None:
        raise click.UsageError("a CSV file to import (or --from hotmart)")
    require_rules_dir(settings.rules_dir, explicit=settings.rules_dir != Path("rules"))
    require_local_database(settings)
    _import_csv(settings, csv_file, adopt_access, check_only)


def _import_csv(settings, csv_file: Path, adopt_access: bool, check_only: bool) -> None:
    from engine.db.session import session_factory
    from engine.pipeline.rules_repository import RulesRepository
    from engine.service import student_import

    rules = RulesRepository(settings.rules_dir).rules
    text = _read_text(csv_file)
    rows, file_errors = student_import.read_rows(text, rules, source=str(csv_file))
    with _progress("importing", len(rows)) as step:
        report, errors = student_import.import_students(
            session_factory(settings),
            rows,
            rules,
            file_errors=file_errors,
            source=str(csv_file),
            adopt_access=adopt_access,
            dry_run=check_only,
            progress=step,
        )
    _exit_on_errors(errors)
    verb = "would create" if check_only else "created"
    click.echo(
        f"{verb} {report.students_created} student(s) and {report.memberships_created} membership(s) "
        f"({report.memberships_existing} already there, {report.grants_recorded} grant(s) recorded)"
    )


def _import_from_hotmart(
    settings, products: tuple[str, ...], discord_ids: Path | None, onboard: bool, adopt_access: bool, check_only: bool
) -> None:
    import engine.worker
    from connectors.errors import WireError
    from connectors.hotmart_api import HotmartApi
    from engine.pipeline.runtime import build_runtime
    from engine.rules.loader import RulesError
    from engine.service.hotmart_import import OnboardingOff, import_from_hotmart
    from engine.service.student_import import read_discord_ids

    if missing := settings.missing_hotmart_credentials():
        click.echo(
            f"error: {', '.join(missing)} not set: the import reads Hotmart's API with the credentials "
            "Hotmart shows in Tools > Developer Credentials (docs/operations/hotmart-api.md)",
            err=True,
        )
        sys.exit(2)
    rt = build_runtime(settings, queue=engine.worker.task_queue())
    if not rt.rules.available:
        raise RulesError(rt.rules.last_problems)  # one line per problem, as for the CSV
    linked = {}
    if discord_ids is not None:
        linked, errors = read_discord_ids(_read_text(discord_ids), rt.rules.rules, str(discord_ids))
        _exit_on_errors(errors)
    try:
        with HotmartApi.from_settings(settings) as reader:
            report = import_from_hotmart(
                rt,
                reader,
                product_keys=products,
                discord_ids=linked,
                adopt_access=adopt_access,
                onboard=onboard,
                dry_run=check_only,
                progress=_progress,
            )
    except (LookupError, OnboardingOff) as exc:
        click.echo(f"error: {exc.args[0]}", err=True)
        sys.exit(2 if isinstance(exc, LookupError) else 1)
    except WireError as exc:
        click.echo(f"error: reading Hotmart failed ({settings.hotmart_api_base}): {exc}; nothing imported", err=True)
        sys.exit(1)
    _exit_on_errors(report.errors)
    for line in report.summary():
        click.echo(line)


@contextmanager
def _progress(label: str, total: int) -> Iterator[Callable[[int], object]]:
    """A progress bar on stderr, shown on a terminal only: a log or a pipe gets the summary lines,
    not a stray label."""
    with click.progressbar(length=total, label=label, file=sys.stderr, hidden=not sys.stderr.isatty()) as bar:
        yield bar.update


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        click.echo(f"error: cannot read {path}: {exc}", err=True)
        sys.exit(2)


def _exit_on_errors(errors: list[str]) -> None:
    if errors:
        for error in errors:
            click.echo(error, err=True)
        click.echo(f"{len(errors)} error(s); nothing imported", err=True)
        sys.exit(1)
