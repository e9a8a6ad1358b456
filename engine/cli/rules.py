"""Commands on the rules: check, test, plan, new-product, dry-run, graph."""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from engine.cli.base import RULES_OPTION, database_session, load_rules_or_exit, main, resolve_rules_dir
from engine.cli.errors import require_local_database
from engine.cli.reconcile import reconcile_and_report
from engine.sources import DEFAULT_SOURCE, SOURCES


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
    from engine.authoring.check import check_warnings, ignored_notes, summary
    from engine.rules.translate import labelled, localize

    rules_dir = resolve_rules_dir(rules_dir)
    for note in ignored_notes(rules_dir):
        click.echo(labelled("note", note), err=True)
    rules = load_rules_or_exit(rules_dir)
    for deprecation in rules.deprecations:
        click.echo(labelled("note", deprecation), err=True)
    warnings = check_warnings(rules, rules_dir)
    for warning in warnings:
        click.echo(labelled("warning", warning), err=True)
    click.echo(localize(summary(rules, warnings)))
    if with_database:
        _check_database(rules)
    if strict and warnings:
        sys.exit(1)


def _check_database(rules) -> None:
    from engine.pipeline.rules_fit import check_database
    from engine.rules.translate import PORTUGUESE

    portuguese = os.environ.get("ENGINE_LANG", "").lower() in PORTUGUESE  # like the rules' own messages
    with database_session() as session:
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
    from engine.authoring.rule_tests import run_rule_tests

    rules_dir = resolve_rules_dir(rules_dir)
    rules = load_rules_or_exit(rules_dir)
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
            click.echo(f"no rule tests in {rules_dir}/tests (see docs/admin-loop/index.md: Changing the rules safely)")
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
    from engine.authoring.impact import GitRefError, impact_of, rules_at_ref
    from engine.db.session import session_factory
    from engine.settings import ToolSettings

    if (candidate_dir is None) == (git_ref is None):
        raise click.UsageError("give either --rules DIR (candidate) or --against GIT_REF (baseline)")
    settings = ToolSettings()  # read-only: no secret needed
    require_local_database(settings)
    loaded_dir = resolve_rules_dir(None)
    try:
        if git_ref is not None:
            with rules_at_ref(loaded_dir, git_ref) as baseline_dir:
                current = load_rules_or_exit(baseline_dir)
            candidate = load_rules_or_exit(loaded_dir)
        else:
            current, candidate = load_rules_or_exit(loaded_dir), load_rules_or_exit(candidate_dir)
    except GitRefError as exc:
        raise click.ClickException(f"cannot read the rules at {git_ref!r}: {exc}") from exc
    if confirm and not apply_:
        raise click.UsageError("--confirm goes with --apply")
    with session_factory(settings)() as session:
        result = impact_of(session, current, candidate)
    if as_json and not apply_:
        click.echo(json.dumps(result.to_dict(), ensure_ascii=False))
    elif not as_json:
        click.echo(result.summary())
    if apply_:
        # The candidate's desired access against the real Discord, ManyChat and classes.
        reconcile_and_report(
            "all",
            "plan",
            confirm=confirm,
            max_revokes=max_revokes,
            rules=candidate,
            as_json=as_json,
            extra={"plan": result.to_dict()} if as_json else None,
        )


def source_id_options(command):
    """``--kiwify-id``, ``--eduzz-id`` ...: one option per source besides the default one."""
    for source in reversed([s for s in SOURCES.values() if s is not DEFAULT_SOURCE]):
        command = click.option(
            f"--{source.name}-id", f"{source.name}_id", default=None, help=f"Its id in {source.title}, if sold there."
        )(command)
    return command


@main.command("new-product")
@click.argument("key")
@click.option("--hotmart-id", required=True, help="The product's id in Hotmart (digits).")
@source_id_options
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
    **source_ids: str | None,
) -> None:
    """Write rules/products/KEY.yaml with every flow the lifecycle uses, then run the checks."""
    from engine.authoring.new_product import ScaffoldRefused, write_product, write_rule_test

    rules_dir = resolve_rules_dir(rules_dir)
    rules = load_rules_or_exit(rules_dir)
    try:
        scaffold = write_product(
            rules,
            rules_dir,
            key,
            hotmart_id,
            subscription=subscription,
            name=name,
            roles=roles,
            tag=tag,
            other_ids={name.removesuffix("_id"): value for name, value in source_ids.items() if value},
        )
    except ScaffoldRefused as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo(f"wrote {scaffold.product_file}")
    if scaffold.catalog_note:
        click.echo(scaffold.catalog_note)
    rules = load_rules_or_exit(rules_dir)
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
@click.option(
    "--source",
    type=click.Choice(list(SOURCES)),
    default=None,
    help="The platform EVENT_FILE comes from (default: recognised from the body).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def dry_run(
    event_file: Path | None,
    event_id: int | None,
    rules_dir: Path | None,
    state: str | None,
    linked: bool | None,
    previous_discord_id: str | None,
    now_text: str | None,
    source: str | None,
    as_json: bool,
) -> None:
    """Show what EVENT_FILE (a payload of any source, or an internal event), or stored event --event
    ID, would do. Runs nothing."""
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
        _dry_run_stored(event_id, resolve_rules_dir(rules_dir), now, as_json)
        return
    try:
        body = json.loads(event_file.read_bytes())
    except (OSError, ValueError) as exc:
        click.echo(f"error: cannot read {event_file}: {exc}", err=True)
        sys.exit(2)
    rules = load_rules_or_exit(resolve_rules_dir(rules_dir))
    if state is not None and state not in rules.states:
        click.echo(f"error: unknown state {state!r} (states: {', '.join(rules.states)})", err=True)
        sys.exit(2)

    from engine.authoring.dry_run import dry_run as run
    from engine.rules.files import rules_version

    result = run(
        body, rules, state=state, linked=bool(linked), now=now, previous_discord_id=previous_discord_id, source=source
    )
    result.rules_version = rules_version(resolve_rules_dir(rules_dir))
    if as_json:
        click.echo(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
    else:
        click.echo(result.trace())


def _dry_run_stored(event_id: int, rules_dir: Path, now: datetime, as_json: bool) -> None:
    from engine.rules.files import rules_version
    from engine.service.replan import replan_event

    rules = load_rules_or_exit(rules_dir)
    with database_session() as session:
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
    from engine.authoring.graph import mermaid

    diagram = mermaid(load_rules_or_exit(resolve_rules_dir(rules_dir)))
    click.echo(f"```mermaid\n{diagram}```\n" if markdown else diagram, nl=False)
