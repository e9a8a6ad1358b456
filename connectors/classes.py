"""The course platform's step adapter: ``enroll`` / ``unenroll`` as signed webhooks.

One message per class of the step, in order: ``class.enrollment.created`` for ``enroll``,
``class.enrollment.deleted`` for ``unenroll``. The message id is the step's (its action run id)
and the class key, so every attempt of the step, an admin's retry included, sends each class
under the same ``webhook-id``: a receiver that deduplicates on it acts once, even when a retry
resends a class that had already gone out before a later one failed.

:class:`~connectors.course_platform.CoursePlatformClient` owns the wire (signing, judging the
reply); this adapter turns its errors into the step's failed result. The engine adds to the step
what the message carries beyond the context: the class names, the membership's state and when
the step was planned (``engine.pipeline.classes.step_for_platform``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime
from typing import Any

from connectors.base import Step, StepContext, StepResult
from connectors.course_platform import CoursePlatformClient
from connectors.errors import WireError

__all__ = ["CREATED", "DELETED", "ClassesConnector", "event_body", "webhook_id"]

log = logging.getLogger(__name__)

CREATED, DELETED = "class.enrollment.created", "class.enrollment.deleted"
_TYPES = {"enroll": CREATED, "unenroll": DELETED}


class ClassesConnector:
    """Runs ``enroll`` and ``unenroll`` steps by telling the course platform."""

    name = "classes"
    actions = frozenset(_TYPES)

    def __init__(self, url: str, secret: str, **wire: Any):
        """``wire``: the :class:`CoursePlatformClient` options (transport, timeout, clock,
        wrap_transport), passed through unchanged."""
        self._wire = CoursePlatformClient(url, secret, **wire)

    def run(self, step: Step, ctx: StepContext) -> StepResult:
        kind = _TYPES.get(step.action)
        if kind is None:
            return StepResult.failed("classes.bad_request", f"unknown classes action {step.action!r}")
        keys = step.params.get("classes") or []
        if not isinstance(keys, list) or not all(isinstance(key, str) and key for key in keys):
            return StepResult.failed("classes.bad_request", f"{step.action}: params need 'classes': class keys")
        if not keys:
            return StepResult.done("no class to tell the course platform about")
        sent: list[str] = []
        for key in keys:
            msg_id = webhook_id(ctx, step.action, key)
            try:
                self._wire.deliver(msg_id, event_body(kind, key, step.params, ctx), f"{kind} for {key}")
            except WireError as exc:
                log.warning("classes: %s for %s failed: %s (%s)", kind, key, exc.error, exc.detail)
                before = f" (already sent: {', '.join(sent)})" if sent else ""
                return StepResult.failed(exc.error, exc.detail + before, retryable=exc.retryable)
            sent.append(f"{key} as {msg_id}")
        return StepResult.done(f"{kind} sent for {', '.join(sent)}")

    def close(self) -> None:
        self._wire.close()


def webhook_id(ctx: StepContext, action: str, class_key: str) -> str:
    """The message id: the same for every attempt of one step and class.

    From the action run id when there is one (always, in the pipeline); otherwise from what the
    step is about, so it is still stable. Class keys are ``[a-z0-9_-]``: never the ``.`` the
    signed content is delimited with.
    """
    if ctx.action_run_id is not None:
        return f"msg_{ctx.action_run_id}_{class_key}"
    about = f"{ctx.event_id}|{ctx.student.id}|{ctx.student.email}|{action}|{class_key}"
    return f"msg_{hashlib.sha256(about.encode()).hexdigest()[:24]}"


def event_body(kind: str, class_key: str, params: dict[str, Any], ctx: StepContext) -> bytes:
    """The message's JSON, minified (the bytes signed are the bytes sent)."""
    names = params.get("class_names") or {}
    student = ctx.student
    body = {
        "type": kind,
        # When the engine decided it (the step was planned), the same on every attempt; the
        # attempt's own time is the webhook-timestamp header.
        "timestamp": params.get("planned_at") or _iso(datetime.now(UTC)),
        "data": {
            "class_key": class_key,
            "class_name": names.get(class_key, class_key),
            "student_id": student.id,
            "email": student.email,
            "name": student.name,
            "discord_id": student.discord_id,
            "product": ctx.product_key or None,
            "membership_state": params.get("membership_state"),
            "event_id": ctx.event_id,
        },
    }
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
