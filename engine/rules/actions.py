"""Every action a rule step may name, declared once.

Per action: its name, the schema of its argument in the YAML (``config.schema.json``'s step
part is generated from here: ``python -m engine.rules.schema``), which of its rendered
parameters are secret, who executes it (a connector or the engine itself), whether running
it twice is harmless, which grant-ledger resource it touches, what its bare form takes from
the product, how the loader checks it and how the planner renders it.

The loader, the planner, the grant ledger, execution's retry policy, the import's adoption
and the connector routing all read :data:`ACTIONS`. Adding an action is one entry here and
one handler: a local function in ``engine/pipeline/local_actions.py`` or a connector's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.rules import messages
from engine.rules.model import (
    TEMPLATE_RE,
    TEMPLATE_VARIABLES,
    Product,
    Rules,
    as_datetime,
    as_list,
    flow_name,
    parse_duration,
)

TOKEN_PLACEHOLDER = "{token}"

# Who runs a step: a connector by name, or the engine in its own database.
DISCORD, MANYCHAT, LOCAL = "discord", "manychat", "local"


@dataclass(frozen=True)
class LedgerUse:
    """The grant-ledger resource an action adds or removes (see ``engine/pipeline/ledger.py``)."""

    kind: str  # discord_role | manychat_tag | class
    param: str  # the rendered parameter listing the resources
    grants: bool  # True: adds access; False: removes it (narrowed to what the engine granted)


@dataclass(frozen=True)
class RenderContext:
    """What rendering a step may read: the product, the event's fields and the student's facts."""

    rules: Rules
    product: Product
    fields: dict[str, Any]
    now: datetime
    token: str | None
    previous_discord_id: str | None
    template: Callable[[str], str]  # fills {token}, {product.name}, {event.x} ...

    @property
    def manychat_options(self) -> dict[str, Any]:
        return {"create_if_missing": True} if self.rules.create_missing_subscribers else {}


@dataclass(frozen=True)
class Skipped:
    """A step this product does without (a flow it declines, an optional one it lacks): recorded as skipped."""

    params: dict[str, Any]
    reason: str


@dataclass(frozen=True)
class CheckContext:
    """What the loader's semantic check of one step may read."""

    tags: frozenset[str]
    fields: frozenset[str]
    classes: dict[str, str]
    internal_events: dict[str, str]


def _no_check(args: Any, ctx: CheckContext) -> list[str]:
    return []


@dataclass(frozen=True)
class Action:
    name: str
    executor: str  # DISCORD | MANYCHAT | LOCAL
    schema: dict[str, Any]  # JSON Schema of the step's argument
    render: Callable[[Any, RenderContext], dict[str, Any] | Skipped]
    check: Callable[[Any, CheckContext], list[str]] = _no_check
    bare: bool = False  # may the step be written as its bare name?
    product_resource: str | None = None  # the Product attribute a bare step uses
    idempotent: bool = True  # running it twice has the effect of once (safe to retry)
    ledger: LedgerUse | None = None
    secret_params: frozenset[str] = field(default_factory=frozenset)  # never shown to the admin
    example: str = ""  # the step written with its parameters, for the loader's messages


# --- argument schemas -----------------------------------------------------------------------

_EVENT = {"type": "string", "pattern": "^[A-Z][A-Z0-9_]*$"}
_FLOW = {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"}
_NAMES = {
    "oneOf": [
        {"type": "null"},
        {"type": "string", "minLength": 1},
        {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
    ]
}
# Shared argument shapes, written to config.schema.json's $defs.
PARAM_DEFS: dict[str, dict[str, Any]] = {
    "role_params": {
        "oneOf": [
            {"type": "null"},
            {
                "type": "object",
                "additionalProperties": False,
                "minProperties": 1,
                "properties": {
                    "roles": {"type": "array", "items": {"$ref": "#/$defs/snowflake"}, "minItems": 1},
                    "account": {
                        "enum": ["current", "previous"],
                        "description": "previous: the Discord account the student linked before (relink)",
                    },
                },
            },
        ]
    },
    "tag_params": _NAMES,
    "class_params": _NAMES,
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/$defs/{name}"}


# --- checks (the loader reports each message at the step's line) ----------------------------


def _check_tags(args: Any, ctx: CheckContext) -> list[str]:
    if args is None:
        return []
    return [
        messages.not_in_catalog("tag", tag, "manychat.tags", ctx.tags) for tag in as_list(args) if tag not in ctx.tags
    ]


def _check_classes(args: Any, ctx: CheckContext) -> list[str]:
    if args is None:
        return []
    return [
        messages.not_in_catalog("class", key, "classes", ctx.classes) for key in as_list(args) if key not in ctx.classes
    ]


def _template_problems(text: str) -> list[str]:
    return [
        messages.unknown_template_variable(name, TEMPLATE_VARIABLES)
        for name in TEMPLATE_RE.findall(text)
        if name not in TEMPLATE_VARIABLES
    ]


def _check_set_field(args: Any, ctx: CheckContext) -> list[str]:
    problems = []
    if args["name"] not in ctx.fields:
        problems.append(messages.not_in_catalog("custom field", args["name"], "manychat.fields", ctx.fields))
    return problems + _template_problems(str(args["value"]))


def _check_schedule(args: Any, ctx: CheckContext) -> list[str]:
    problems = []
    if args["event"] not in ctx.internal_events:
        problems.append(messages.undeclared_timer("schedule", args["event"], ctx.internal_events))
    if "after" in args:
        try:
            parse_duration(args["after"])
        except ValueError as exc:
            problems.append(str(exc))
    return problems


def _check_cancel_timers(args: Any, ctx: CheckContext) -> list[str]:
    return [
        messages.undeclared_timer("cancel_timers", event, ctx.internal_events)
        for event in args or []
        if event not in ctx.internal_events
    ]


def _check_text(args: Any, ctx: CheckContext) -> list[str]:
    return _template_problems(args)


# --- rendering (the planner: YAML argument -> the step's parameters) ------------------------


def _render_roles(args: Any, ctx: RenderContext) -> dict[str, Any]:
    args = args or {}
    params: dict[str, Any] = {"role_ids": list(args.get("roles") or ctx.product.discord_roles)}
    if args.get("account") == "previous":
        params["discord_id"] = ctx.previous_discord_id
    return params


def _render_tags(args: Any, ctx: RenderContext) -> dict[str, Any]:
    tags = list(ctx.product.manychat_tags) if args is None else as_list(args)
    return {"tags": tags, **ctx.manychat_options}


def _render_classes(args: Any, ctx: RenderContext) -> dict[str, Any]:
    return {"classes": list(ctx.product.classes) if args is None else as_list(args)}


def _render_set_field(args: Any, ctx: RenderContext) -> dict[str, Any]:
    value = args["value"]
    if isinstance(value, str):
        value = ctx.template(value)
    return {"field": args["name"], "value": value, **ctx.manychat_options}


def _render_flow(args: Any, ctx: RenderContext) -> dict[str, Any] | Skipped:
    flow, product = flow_name(args), ctx.product
    if flow not in product.flows:  # declined (`none`) or optional: the loader allows nothing else
        if flow in product.no_flows:
            return Skipped({"flow": flow}, f"product {product.key} sends no {flow!r} flow (flows: {flow}: none)")
        return Skipped({"flow": flow}, f"product {product.key} has no {flow!r} flow (optional step)")
    return {"flow": flow, "flow_ns": product.flows[flow], **ctx.manychat_options}


def _render_issue_token(args: Any, ctx: RenderContext) -> dict[str, Any]:
    expires_at = ctx.now + ctx.rules.onboarding.code_valid_for
    return {"code": ctx.token or TOKEN_PLACEHOLDER, "expires_at": expires_at.isoformat()}


def _render_nothing(args: Any, ctx: RenderContext) -> dict[str, Any]:
    return {}


def _render_schedule(args: Any, ctx: RenderContext) -> dict[str, Any]:
    if "after" in args:
        return {"event": args["event"], "due_at": (ctx.now + parse_duration(args["after"])).isoformat()}
    # `at`: a date taken from the event; a missing or past date means "now".
    when = as_datetime(ctx.fields.get(args["at"]))
    params = {"event": args["event"], "due_at": max(when or ctx.now, ctx.now).isoformat()}
    if when is None:
        params["note"] = f"event has no {args['at']}; due now"
    return params


def _render_cancel_timers(args: Any, ctx: RenderContext) -> dict[str, Any]:
    return {"events": list(args or [])}


# --- the registry ---------------------------------------------------------------------------


def _access(
    name: str, executor: str, resource: str, ledger: LedgerUse, render, check=_no_check, *, example: str
) -> Action:
    """An action that grants or removes one kind of access; bare, it takes the product's own."""
    params = {"discord_roles": "role_params", "manychat_tags": "tag_params", "classes": "class_params"}[resource]
    return Action(
        name,
        executor,
        _ref(params),
        render,
        check,
        bare=True,
        product_resource=resource,
        ledger=ledger,
        example=example,
    )


def _text(name: str, executor: str, param: str, description: str, *, example: str, idempotent: bool = True) -> Action:
    """An action whose argument is one templated text (pt-BR when a student reads it)."""

    def render(args: Any, ctx: RenderContext) -> dict[str, Any]:
        return {param: ctx.template(args)}

    schema = {"type": "string", "minLength": 1, "description": description}
    return Action(name, executor, schema, render, _check_text, example=example, idempotent=idempotent)


_ROLE, _TAG, _CLASS = ("discord_role", "role_ids"), ("manychat_tag", "tags"), ("class", "classes")

_ALL = (
    _access(
        "add_role",
        DISCORD,
        "discord_roles",
        LedgerUse(*_ROLE, grants=True),
        _render_roles,
        example='add_role: {roles: ["1180000000000000001"]}',
    ),
    _access(
        "remove_role",
        DISCORD,
        "discord_roles",
        LedgerUse(*_ROLE, grants=False),
        _render_roles,
        example="remove_role: {account: previous}",
    ),
    _access(
        "add_tag",
        MANYCHAT,
        "manychat_tags",
        LedgerUse(*_TAG, grants=True),
        _render_tags,
        _check_tags,
        example="add_tag: ex-assinante",
    ),
    _access(
        "remove_tag",
        MANYCHAT,
        "manychat_tags",
        LedgerUse(*_TAG, grants=False),
        _render_tags,
        _check_tags,
        example="remove_tag: aluno-curso",
    ),
    _access(
        "enroll",
        LOCAL,
        "classes",
        LedgerUse(*_CLASS, grants=True),
        _render_classes,
        _check_classes,
        example="enroll: curso-2026",
    ),
    _access(
        "unenroll",
        LOCAL,
        "classes",
        LedgerUse(*_CLASS, grants=False),
        _render_classes,
        _check_classes,
        example="unenroll: curso-2026",
    ),
    Action(
        "set_field",
        MANYCHAT,
        {
            "type": "object",
            "required": ["name", "value"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "value": {"type": ["string", "number", "boolean"]},
            },
        },
        _render_set_field,
        _check_set_field,
        example='set_field: {name: codigo_discord, value: "{token}"}',
    ),
    Action(
        "trigger_flow",
        MANYCHAT,
        {
            "description": "A logical flow name, resolved per product (flows:). optional: true skips the step "
            "for a product that does not define the flow.",
            "oneOf": [
                _FLOW,
                {
                    "type": "object",
                    "required": ["flow"],
                    "additionalProperties": False,
                    "properties": {
                        "flow": _FLOW,
                        "optional": {
                            "type": "boolean",
                            "description": "true: a product without this flow skips the step (recorded as skipped)",
                        },
                    },
                },
            ],
        },
        _render_flow,
        example="trigger_flow: welcome",
        idempotent=False,  # a second request sends the WhatsApp message again
    ),
    Action(
        "schedule",
        LOCAL,
        {
            "type": "object",
            "required": ["event"],
            "additionalProperties": False,
            "minProperties": 2,
            "maxProperties": 2,
            "properties": {
                "event": _EVENT,
                "after": _ref("duration"),
                "at": {"type": "string", "enum": ["date_next_charge"], "description": "a date taken from the event"},
            },
        },
        _render_schedule,
        _check_schedule,
        example="schedule: {event: GRACE_EXPIRED, after: 7d}",
    ),
    Action(
        "cancel_timers",
        LOCAL,
        {"type": "array", "items": _EVENT},
        _render_cancel_timers,
        _check_cancel_timers,
        bare=True,
        example="cancel_timers: [GRACE_EXPIRED]",
    ),
    _text(
        "alert",
        LOCAL,
        "message",
        "a message for the admins (alerts + Discord channel)",
        example='alert: "Chargeback de {student.email}"',
    ),
    Action(
        "issue_token",
        LOCAL,
        {"type": "null"},
        _render_issue_token,
        bare=True,
        secret_params=frozenset({"code"}),
        example="issue_token",
    ),
    Action("revoke_token", LOCAL, {"type": "null"}, _render_nothing, bare=True, example="revoke_token"),
    _text(
        "send_dm",
        DISCORD,
        "content",
        "a direct message to the student's linked Discord account",
        example='send_dm: "Olá {student.name}, seu acesso está liberado"',
        idempotent=False,  # Discord dedupes a nonce for minutes only: a late resend is a second message
    ),
)

ACTIONS: dict[str, Action] = {action.name: action for action in _ALL}
EXAMPLES: dict[str, str] = {name: action.example for name, action in ACTIONS.items()}
IDEMPOTENT: frozenset[str] = frozenset(name for name, action in ACTIONS.items() if action.idempotent)


def run_by(executor: str) -> frozenset[str]:
    """The actions a connector (or LOCAL) runs."""
    return frozenset(name for name, action in ACTIONS.items() if action.executor == executor)


def ledger_uses() -> Iterable[tuple[str, LedgerUse]]:
    return ((name, action.ledger) for name, action in ACTIONS.items() if action.ledger is not None)


# --- config.schema.json ---------------------------------------------------------------------

STEP_DESCRIPTION = "An action: a bare name uses the product's own resources; a one-key mapping gives parameters."


def step_schema() -> dict[str, Any]:
    """``$defs.step`` of config.schema.json: a bare name, or a one-key mapping to the argument."""
    return {
        "description": STEP_DESCRIPTION,
        "oneOf": [
            {"type": "string", "enum": [name for name, action in ACTIONS.items() if action.bare]},
            {
                "type": "object",
                "minProperties": 1,
                "maxProperties": 1,
                "additionalProperties": False,
                "properties": {name: action.schema for name, action in ACTIONS.items()},
            },
        ],
    }


def with_actions(schema: dict[str, Any]) -> dict[str, Any]:
    """The rules schema with its action part (the step and its shared argument shapes) from here."""
    defs = dict(schema["$defs"])
    defs["step"] = step_schema()
    defs.update(PARAM_DEFS)
    return {**schema, "$defs": defs}
