"""What an action declaration is (:class:`Action`) and what its functions may read.

The declarations themselves are in :mod:`engine.rules.actions`; what each action does with
its argument (the loader's check, the planner's rendering) is in :mod:`engine.rules.action_params`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.rules.model import Product, Rules

# What a rendered issue_token step shows for the code when there is no real one (a dry run).
TOKEN_PLACEHOLDER = "{token}"


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


def no_check(args: Any, ctx: CheckContext) -> list[str]:
    return []


@dataclass(frozen=True)
class Action:
    name: str
    executor: str  # DISCORD | MANYCHAT | CLASSES | LOCAL
    schema: dict[str, Any]  # JSON Schema of the step's argument
    render: Callable[[Any, RenderContext], dict[str, Any] | Skipped]
    check: Callable[[Any, CheckContext], list[str]] = no_check
    bare: bool = False  # may the step be written as its bare name?
    product_resource: str | None = None  # the Product attribute a bare step uses
    idempotent: bool = True  # running it twice has the effect of once (safe to retry)
    ledger: LedgerUse | None = None
    secret_params: frozenset[str] = field(default_factory=frozenset)  # never shown to the admin
    example: str = ""  # the step written with its parameters, for the loader's messages
    # The rendered parameter naming what the step acts on (a rule test's scalar expectation
    # compares it: `trigger_flow: refund`); None: the step takes no argument worth naming.
    main_param: str | None = None
    inverse: str | None = None  # the action that undoes it (add_role <-> remove_role)
    # What the student reads or keeps (a message, a code, a field a message shows): it goes out
    # once per transition, and a re-evaluated history never sends it twice.
    one_shot: bool = False
    # Re-run for each transition that survives a re-evaluated history, whatever went out before
    # (it undoes something rather than telling the student something: revoke_token).
    follows_transition: bool = False
    message: bool = False  # a message to the student (over WhatsApp or Discord)
    product_flow: bool = False  # names one of the product's flows (flows:), which each product defines or declines
    admin_alert: bool = False  # tells the admins: once per (event, transition), ever
    timer: str | None = None  # "set" | "cancel": what the step does to the membership's timers


@dataclass(frozen=True)
class PlannedStep:
    """A rule's step rendered for one event: an action with its parameters, as the planner decides
    it and the pipeline stores it (a connector receives its action and parameters only)."""

    action: str
    params: dict[str, Any] = field(default_factory=dict)
    # Set when the rules say this step does nothing for this product (an optional flow the
    # product lacks): recorded as skipped with this reason, never sent to a connector.
    skip_reason: str | None = None
