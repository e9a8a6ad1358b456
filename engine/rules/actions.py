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

from collections.abc import Iterable
from typing import Any

from engine.rules.action_params import (
    check_cancel_timers,
    check_classes,
    check_schedule,
    check_set_field,
    check_tags,
    check_text,
    render_cancel_timers,
    render_classes,
    render_flow,
    render_issue_token,
    render_nothing,
    render_roles,
    render_schedule,
    render_set_field,
    render_tags,
)
from engine.rules.action_types import Action, LedgerUse, RenderContext, no_check

# Who runs a step: a connector by name, or the engine in its own database. The classes are both:
# the engine's own table, and the course platform's webhook when COURSE_WEBHOOK_ENABLED.
DISCORD, MANYCHAT, CLASSES, LOCAL = "discord", "manychat", "classes", "local"

# Argument shapes several declarations use. The shared $defs they name (role_params, tag_params,
# class_params) are written by engine.rules.schema.
_EVENT = {"type": "string", "pattern": "^[A-Z][A-Z0-9_]*$"}
_FLOW = {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/$defs/{name}"}


# --- the registry ---------------------------------------------------------------------------


def _access(
    name: str,
    executor: str,
    resource: str,
    ledger: LedgerUse,
    render,
    check=no_check,
    *,
    inverse: str,
    example: str,
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
        main_param=ledger.param,
        inverse=inverse,
    )


def _text(name: str, executor: str, param: str, description: str, *, example: str, **declared: Any) -> Action:
    """An action whose argument is one templated text (pt-BR when a student reads it)."""

    def render(args: Any, ctx: RenderContext) -> dict[str, Any]:
        return {param: ctx.template(args)}

    schema = {"type": "string", "minLength": 1, "description": description}
    return Action(name, executor, schema, render, check_text, example=example, main_param=param, **declared)


_ROLE, _TAG, _CLASS = ("discord_role", "role_ids"), ("manychat_tag", "tags"), ("class", "classes")

_ALL = (
    _access(
        "add_role",
        DISCORD,
        "discord_roles",
        LedgerUse(*_ROLE, grants=True),
        render_roles,
        inverse="remove_role",
        example='add_role: {roles: ["1180000000000000001"]}',
    ),
    _access(
        "remove_role",
        DISCORD,
        "discord_roles",
        LedgerUse(*_ROLE, grants=False),
        render_roles,
        inverse="add_role",
        example="remove_role: {account: previous}",
    ),
    _access(
        "add_tag",
        MANYCHAT,
        "manychat_tags",
        LedgerUse(*_TAG, grants=True),
        render_tags,
        check_tags,
        inverse="remove_tag",
        example="add_tag: ex-assinante",
    ),
    _access(
        "remove_tag",
        MANYCHAT,
        "manychat_tags",
        LedgerUse(*_TAG, grants=False),
        render_tags,
        check_tags,
        inverse="add_tag",
        example="remove_tag: aluno-curso",
    ),
    _access(
        "enroll",
        CLASSES,
        "classes",
        LedgerUse(*_CLASS, grants=True),
        render_classes,
        check_classes,
        inverse="unenroll",
        example="enroll: curso-2026",
    ),
    _access(
        "unenroll",
        CLASSES,
        "classes",
        LedgerUse(*_CLASS, grants=False),
        render_classes,
        check_classes,
        inverse="enroll",
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
        render_set_field,
        check_set_field,
        example='set_field: {name: codigo_discord, value: "{token}"}',
        main_param="field",
        one_shot=True,  # it carries what the next message shows (the code)
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
        render_flow,
        example="trigger_flow: welcome",
        idempotent=False,  # a second request sends the WhatsApp message again
        product_flow=True,
        main_param="flow",
        one_shot=True,
        message=True,
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
        render_schedule,
        check_schedule,
        example="schedule: {event: GRACE_EXPIRED, after: 7d}",
        main_param="event",
        timer="set",
    ),
    Action(
        "cancel_timers",
        LOCAL,
        {"type": "array", "items": _EVENT},
        render_cancel_timers,
        check_cancel_timers,
        bare=True,
        example="cancel_timers: [GRACE_EXPIRED]",
        main_param="events",
        timer="cancel",
    ),
    _text(
        "alert",
        LOCAL,
        "message",
        "a message for the admins (alerts + Discord channel)",
        example='alert: "Chargeback de {student.email}"',
        admin_alert=True,
    ),
    Action(
        "issue_token",
        LOCAL,
        {"type": "null"},
        render_issue_token,
        bare=True,
        secret_params=frozenset({"code"}),
        example="issue_token",
        main_param="code",
        one_shot=True,
    ),
    Action(
        "revoke_token",
        LOCAL,
        {"type": "null"},
        render_nothing,
        bare=True,
        example="revoke_token",
        inverse="issue_token",
        follows_transition=True,
    ),
    _text(
        "send_dm",
        DISCORD,
        "content",
        "a direct message to the student's linked Discord account",
        example='send_dm: "Olá {student.name}, seu acesso está liberado"',
        idempotent=False,  # Discord dedupes a nonce for minutes only: a late resend is a second message
        message=True,
    ),
)

ACTIONS: dict[str, Action] = {action.name: action for action in _ALL}
EXAMPLES: dict[str, str] = {name: action.example for name, action in ACTIONS.items()}
IDEMPOTENT: frozenset[str] = frozenset(name for name, action in ACTIONS.items() if action.idempotent)
# Sent once per transition, never twice by a re-evaluated history (engine.pipeline.ordering).
ONE_SHOT: frozenset[str] = frozenset(name for name, action in ACTIONS.items() if action.one_shot)
# Steps naming one of the product's flows (flows:), which each product defines or declines.
FLOW_ACTIONS: frozenset[str] = frozenset(name for name, action in ACTIONS.items() if action.product_flow)


def granting(kind: str) -> str:
    """The action that grants one kind of access (discord_role, manychat_tag, class)."""
    (name,) = (n for n, a in ACTIONS.items() if a.ledger is not None and a.ledger.grants and a.ledger.kind == kind)
    return name


def the_action(**declared: Any) -> str:
    """The one action declared so (``the_action(timer="cancel")``): code that writes a step of
    its own names it by what it does, never by its name."""
    (name,) = (n for n, a in ACTIONS.items() if all(getattr(a, k) == v for k, v in declared.items()))
    return name


def access_pairs() -> list[tuple[Action, Action]]:
    """(removing, granting) action per kind of access, in the order the registry declares them."""
    return [(ACTIONS[a.inverse], a) for a in ACTIONS.values() if a.ledger is not None and a.ledger.grants]


def run_by(executor: str) -> frozenset[str]:
    """The actions a connector (or LOCAL) runs."""
    return frozenset(name for name, action in ACTIONS.items() if action.executor == executor)


def ledger_uses() -> Iterable[tuple[str, LedgerUse]]:
    return ((name, action.ledger) for name, action in ACTIONS.items() if action.ledger is not None)
