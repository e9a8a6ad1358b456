"""Rules (``/ui/rules``): the rules this process runs (version, load error), the products with
their ids on each platform, their access and flows, the lifecycle as a diagram and as a table;
and the dry-run form (``/ui/rules/dry-run``): what the current rules would do with a pasted
payload or a stored event, as ``engine dry-run`` shows it. Nothing runs, nothing is stored."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from markupsafe import Markup

from engine.authoring.dry_run import dry_run
from engine.pipeline.runtime import Runtime
from engine.rules.model import Rules, TransitionRule
from engine.service.redaction import Redactor
from engine.service.replan import replan_event
from engine.service.schemas import MAX_ID
from engine.sources import SOURCES
from engine.web.access import PREFIX, ActionDep, Page, PageDep
from engine.web.diagram import lifecycle_svg
from engine.web.paging import one_of
from engine.web.rendering import render_page

router = APIRouter(prefix=PREFIX, include_in_schema=False)

PAYLOAD_LENGTH = 256 * 1024  # characters: the largest real webhook body is a few kilobytes


def _json_text(value: Any) -> str:
    """A step's arguments or parameters on one line, as JSON (what the rules file says, quoted)."""
    return json.dumps(value, ensure_ascii=False, default=str)


@dataclass(frozen=True)
class TransitionRow:
    """One rule of the lifecycle as the table shows it (in file order: the first match wins)."""

    name: str
    sources: tuple[str, ...]
    events: tuple[str, ...]
    dest: str | None
    kinds: tuple[str, ...]
    if_: str | None
    unless: str | None
    steps: list[str]
    where: str


def _row(rule: TransitionRule) -> TransitionRow:
    return TransitionRow(
        name=rule.name,
        sources=rule.sources,
        events=rule.events,
        dest=rule.dest,
        kinds=rule.kinds or (),
        if_=rule.if_.describe() if rule.if_ else None,
        unless=rule.unless.describe() if rule.unless else None,
        steps=[step.action if step.args is None else f"{step.action}: {_json_text(step.args)}" for step in rule.steps],
        where=f"{rule.file}:{rule.line}",
    )


def _current_rules(rt: Runtime) -> Rules | None:
    rt.rules.reload_if_changed()  # "the rules on disk": this process reloads them first, as the overview does
    return rt.rules.rules if rt.rules.available else None


@router.get("/rules")
async def show_rules(page: PageDep) -> HTMLResponse:
    rt = page.rt
    rules = await run_in_threadpool(_current_rules, rt)
    return render_page(
        page,
        "rules.html",
        rules=rules,
        version=rt.rules.version,
        load_error=rt.rules.load_error,
        transitions=[_row(rule) for rule in rules.transitions] if rules else [],
        diagram=_diagram(page, rules) if rules else None,
    )


def _diagram(page: Page, rules: Rules) -> Markup:
    return lifecycle_svg(rules, title=page.t("rules.diagram_title"), any_state=page.t("rules.any_state"))


def _dry_run_page(page: Page, rules: Rules | None, *, form: dict[str, Any], **result: Any) -> HTMLResponse:
    return render_page(
        page,
        "rules_dry_run.html",
        rules=rules,
        version=page.rt.rules.version,
        load_error=page.rt.rules.load_error,
        sources=list(SOURCES),
        form=form,
        payload_length=PAYLOAD_LENGTH,
        **result,
    )


@router.get("/rules/dry-run")
async def dry_run_form(page: PageDep) -> HTMLResponse:
    rules = await run_in_threadpool(_current_rules, page.rt)
    return _dry_run_page(page, rules, form={})


@router.post("/rules/dry-run")
async def dry_run_submit(
    page: ActionDep,
    payload: Annotated[str, Form(max_length=PAYLOAD_LENGTH)] = "",
    source: Annotated[str, Form(max_length=20)] = "",
    state: Annotated[str, Form(max_length=50)] = "",
    linked: Annotated[bool, Form()] = False,
    event_id: Annotated[int | None, Form(ge=1, le=MAX_ID)] = None,
) -> HTMLResponse:
    """A read that carries a body, so a POST with the CSRF token; it plans and shows, no more."""
    rt = page.rt
    one_of("source", source, SOURCES, where="body")
    rules = await run_in_threadpool(_current_rules, rt)
    form = {"payload": payload, "source": source, "state": state, "linked": linked, "event_id": event_id or ""}
    if rules is None:
        return _dry_run_page(page, None, form=form)
    one_of("state", state, rules.states, where="body")
    redact = Redactor.for_settings(rt.settings)

    if event_id is not None:

        def replan():
            with rt.sessions() as session:  # read only: nothing is committed
                try:
                    return replan_event(session, event_id, rules, now=rt.now(), rules_version=rt.rules.version)
                except LookupError:
                    return None

        found = await run_in_threadpool(replan)
        if found is None:
            raise HTTPException(404)
        stored = redact(found.to_dict())
        return _dry_run_page(page, rules, form=form, stored=stored)

    if not payload.strip():
        return _dry_run_page(page, rules, form=form, problem=page.t("rules.nothing_to_plan"))
    try:
        body = json.loads(payload)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested deeper than the parser goes
        return _dry_run_page(page, rules, form=form, problem=page.t("rules.invalid_json", error=str(exc)[:200]))
    result = await run_in_threadpool(
        lambda: dry_run(body, rules, state=state or None, linked=linked, now=rt.now(), source=source or None)
    )
    result.rules_version = rt.rules.version
    planned = redact(result.to_dict())
    return _dry_run_page(
        page,
        rules,
        form=form,
        planned=planned,
        source_used=result.event.source,
        connector_calls=result.connector_calls,
    )
