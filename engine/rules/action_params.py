"""What each action does with its YAML argument: the loader's check and the planner's rendering.

A check returns the messages the loader reports at the step's line; a renderer turns the
argument into the step's parameters (or :class:`~engine.rules.action_types.Skipped`).
:mod:`engine.rules.actions` pairs them with each action's declaration.
"""

from __future__ import annotations

from typing import Any

from engine.rules import messages
from engine.rules.action_types import TOKEN_PLACEHOLDER, CheckContext, RenderContext, Skipped
from engine.rules.model import TEMPLATE_RE, TEMPLATE_VARIABLES, as_datetime, as_list, flow_name, parse_duration

# --- checks (the loader reports each message at the step's line) ----------------------------


def check_tags(args: Any, ctx: CheckContext) -> list[str]:
    if args is None:
        return []
    return [
        messages.not_in_catalog("tag", tag, "manychat.tags", ctx.tags) for tag in as_list(args) if tag not in ctx.tags
    ]


def check_classes(args: Any, ctx: CheckContext) -> list[str]:
    if args is None:
        return []
    return [
        messages.not_in_catalog("class", key, "classes", ctx.classes) for key in as_list(args) if key not in ctx.classes
    ]


def template_problems(text: str) -> list[str]:
    return [
        messages.unknown_template_variable(name, TEMPLATE_VARIABLES)
        for name in TEMPLATE_RE.findall(text)
        if name not in TEMPLATE_VARIABLES
    ]


def check_set_field(args: Any, ctx: CheckContext) -> list[str]:
    problems = []
    if args["name"] not in ctx.fields:
        problems.append(messages.not_in_catalog("custom field", args["name"], "manychat.fields", ctx.fields))
    return problems + template_problems(str(args["value"]))


def check_schedule(args: Any, ctx: CheckContext) -> list[str]:
    problems = []
    if args["event"] not in ctx.internal_events:
        problems.append(messages.undeclared_timer("schedule", args["event"], ctx.internal_events))
    if "after" in args:
        try:
            parse_duration(args["after"])
        except ValueError as exc:
            problems.append(str(exc))
    return problems


def check_cancel_timers(args: Any, ctx: CheckContext) -> list[str]:
    return [
        messages.undeclared_timer("cancel_timers", event, ctx.internal_events)
        for event in args or []
        if event not in ctx.internal_events
    ]


def check_text(args: Any, ctx: CheckContext) -> list[str]:
    return template_problems(args)


# --- rendering (the planner: YAML argument -> the step's parameters) ------------------------


def render_roles(args: Any, ctx: RenderContext) -> dict[str, Any]:
    args = args or {}
    params: dict[str, Any] = {"role_ids": list(args.get("roles") or ctx.product.discord_roles)}
    if args.get("account") == "previous":
        params["discord_id"] = ctx.previous_discord_id
    return params


def render_tags(args: Any, ctx: RenderContext) -> dict[str, Any]:
    tags = list(ctx.product.manychat_tags) if args is None else as_list(args)
    return {"tags": tags, **ctx.manychat_options}


def render_classes(args: Any, ctx: RenderContext) -> dict[str, Any]:
    return {"classes": list(ctx.product.classes) if args is None else as_list(args)}


def render_set_field(args: Any, ctx: RenderContext) -> dict[str, Any]:
    value = args["value"]
    if isinstance(value, str):
        value = ctx.template(value)
    return {"field": args["name"], "value": value, **ctx.manychat_options}


def render_flow(args: Any, ctx: RenderContext) -> dict[str, Any] | Skipped:
    flow, product = flow_name(args), ctx.product
    if flow not in product.flows:  # declined (`none`) or optional: the loader allows nothing else
        if flow in product.no_flows:
            return Skipped({"flow": flow}, f"product {product.key} sends no {flow!r} flow (flows: {flow}: none)")
        return Skipped({"flow": flow}, f"product {product.key} has no {flow!r} flow (optional step)")
    return {"flow": flow, "flow_ns": product.flows[flow], **ctx.manychat_options}


def render_issue_token(args: Any, ctx: RenderContext) -> dict[str, Any]:
    expires_at = ctx.now + ctx.rules.onboarding.code_valid_for
    return {"code": ctx.token or TOKEN_PLACEHOLDER, "expires_at": expires_at.isoformat()}


def render_nothing(args: Any, ctx: RenderContext) -> dict[str, Any]:
    return {}


def render_schedule(args: Any, ctx: RenderContext) -> dict[str, Any]:
    if "after" in args:
        return {"event": args["event"], "due_at": (ctx.now + parse_duration(args["after"])).isoformat()}
    # `at`: a date taken from the event; a missing or past date means "now".
    when = as_datetime(ctx.fields.get(args["at"]))
    params = {"event": args["event"], "due_at": max(when or ctx.now, ctx.now).isoformat()}
    if when is None:
        params["note"] = f"event has no {args['at']}; due now"
    return params


def render_cancel_timers(args: Any, ctx: RenderContext) -> dict[str, Any]:
    return {"events": list(args or [])}
