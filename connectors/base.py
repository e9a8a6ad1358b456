"""The one narrow protocol every connector speaks.

The worker hands a connector one planned :class:`Step` plus a :class:`StepContext`
(who the student is, which event asked for it) and gets back a :class:`StepResult`.
Connectors never raise for an outcome of the outside world: every failure is a
result with a named error class (``discord.forbidden``, ``manychat.unavailable`` ...)
and a verdict on whether running the step again is safe.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable


class StepStatus(StrEnum):
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(frozen=True)
class Step:
    """What a connector is asked to run: an action with its fully rendered parameters."""

    action: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StudentRef:
    """What a connector may know about the student a step is for."""

    id: int | None
    email: str
    name: str | None = None
    phone: str | None = None  # E.164, "+5511999990001"
    discord_id: str | None = None  # snowflake as a string
    manychat_subscriber_id: str | None = None


@dataclass(frozen=True)
class StepContext:
    """Where a step comes from: used for audit reasons, nonces and logs."""

    student: StudentRef
    event_id: int | None = None
    correlation_id: str | None = None  # the event's: ties a step's requests and log lines to its webhook
    event_type: str = ""
    product_key: str = ""
    membership_id: int | None = None
    action_run_id: int | None = None
    # Called by a connector right before it writes a request that must not be repeated
    # (a ManyChat flow): until then a stopped worker may simply run the step again.
    before_send: Callable[[], None] | None = field(default=None, compare=False, repr=False)
    # Called when the other side proved it did not act (a 429) and the connector will wait
    # before sending again: the step is no longer in flight meanwhile.
    not_sent: Callable[[], None] | None = field(default=None, compare=False, repr=False)

    @property
    def reason(self) -> str:
        """A short audit text, e.g. for Discord's X-Audit-Log-Reason."""
        return f"engine: {self.event_type} {self.product_key} event {self.event_id}".strip()


@dataclass(frozen=True)
class StepResult:
    status: StepStatus
    error: str | None = None  # named error class, e.g. "discord.forbidden"
    detail: str = ""  # human text for the admin (never a secret)
    retryable: bool = False  # is running the same step again safe and possibly useful?
    # For non-idempotent steps (a ManyChat flow): did the request possibly reach
    # the other side? If so, nothing may resend it automatically.
    maybe_delivered: bool = False
    data: dict[str, Any] = field(default_factory=dict)  # facts to persist (subscriber id ...)

    @classmethod
    def done(cls, detail: str = "", **data: Any) -> StepResult:
        return cls(StepStatus.DONE, detail=detail, data=data)

    @classmethod
    def skipped(cls, detail: str, **data: Any) -> StepResult:
        return cls(StepStatus.SKIPPED, detail=detail, data=data)

    @classmethod
    def failed(
        cls,
        error: str,
        detail: str = "",
        *,
        retryable: bool = False,
        maybe_delivered: bool = False,
        **data: Any,
    ) -> StepResult:
        return cls(
            StepStatus.FAILED,
            error=error,
            detail=detail,
            retryable=retryable,
            maybe_delivered=maybe_delivered,
            data=data,
        )

    @property
    def ok(self) -> bool:
        return self.status is not StepStatus.FAILED

    def with_data(self, **data: Any) -> StepResult:
        """The same result with more facts to persist."""
        return replace(self, data={**self.data, **data})


@runtime_checkable
class Connector(Protocol):
    """Runs the steps whose action is in ``actions``."""

    name: str
    actions: frozenset[str]

    def run(self, step: Step, ctx: StepContext) -> StepResult: ...


class RecordingConnector:
    """Accepts every step and remembers it: used by ``engine dry-run`` and by tests.

    ``results`` lets a test script outcomes per action (a list is consumed in order;
    a callable gets the step and context).
    """

    def __init__(self, name: str = "recording", actions: frozenset[str] | None = None):
        self.name = name
        self.actions = actions if actions is not None else frozenset()
        self.calls: list[tuple[Step, StepContext]] = []
        self.results: dict[str, Any] = {}

    def run(self, step: Step, ctx: StepContext) -> StepResult:
        if ctx.before_send is not None:
            ctx.before_send()  # as a real connector does right before writing the request
        self.calls.append((step, ctx))
        scripted = self.results.get(step.action)
        if callable(scripted):
            return scripted(step, ctx)
        if isinstance(scripted, list) and scripted:
            return scripted.pop(0)
        return StepResult.done("recorded")

    def actions_called(self) -> list[str]:
        return [step.action for step, _ in self.calls]
