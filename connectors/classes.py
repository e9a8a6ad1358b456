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

With ``enrollments_url`` (``COURSE_ENROLLMENTS_URL``) it also reads what the platform holds, for
reconcile: :meth:`ClassesConnector.list_enrollments` pages through one class's enrollments
(``GET {url}?class=<key>&cursor=<next_cursor>``, each request signed like a message), the contract
of docs/operations/course-platform.md ("Reconcile against the platform").
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import count
from typing import Any

from connectors._http import json_or_none
from connectors.base import Step, StepContext, StepResult
from connectors.course_platform import ENROLLMENTS_URL, MISCONFIGURED, CoursePlatformClient
from connectors.errors import Misconfigured, Unavailable, WireError

__all__ = ["CREATED", "DELETED", "ClassesConnector", "event_body", "webhook_id"]

log = logging.getLogger(__name__)

CREATED, DELETED = "class.enrollment.created", "class.enrollment.deleted"
_TYPES = {"enroll": CREATED, "unenroll": DELETED}
BAD_REPLY = "classes.bad_reply"
_MAX_PAGES = 10_000  # of one class: a platform whose cursors never end is not read for ever


class ClassesConnector:
    """Runs ``enroll`` and ``unenroll`` steps by telling the course platform."""

    name = "classes"
    actions = frozenset(_TYPES)

    def __init__(self, url: str, secret: str, *, enrollments_url: str = "", **wire: Any):
        """``enrollments_url``: where the platform serves its enrollments (empty: not read);
        ``wire``: the :class:`CoursePlatformClient` options (transport, timeout, clock, sleep,
        wrap_transport), passed through unchanged."""
        self._wire = CoursePlatformClient(url, secret, **wire)
        self._enrollments_url = enrollments_url.strip()

    @property
    def reads_enrollments(self) -> bool:
        """Whether :meth:`list_enrollments` can ask the platform (COURSE_ENROLLMENTS_URL is set)."""
        return bool(self._enrollments_url)

    def list_enrollments(self, class_key: str) -> Iterator[str]:
        """The e-mail of every student the platform holds in ``class_key`` (stripped, lower case, as the
        engine keeps them), page after page until ``next_cursor`` is null. Raises
        :class:`~connectors.errors.WireError` when a page cannot be read (the platform failing,
        refusing the signature, or answering outside the contract)."""
        if not self._enrollments_url:
            raise Misconfigured(MISCONFIGURED, f"{ENROLLMENTS_URL} is not set: the platform's enrollments are not read")
        cursor: str | None = None
        given: set[str] = set()
        for page in count(1):
            what = f"enrollments of {class_key}, page {page}"
            if page > _MAX_PAGES:
                raise Unavailable(BAD_REPLY, f"{what}: more than {_MAX_PAGES} pages; is next_cursor ever null?")
            params = {"class": class_key, **({"cursor": cursor} if cursor else {})}
            emails, cursor = _page(json_or_none(self._wire.read(self._enrollments_url, params, what)), what)
            yield from emails
            if cursor is None:
                return
            if cursor in given:
                raise Unavailable(BAD_REPLY, f"{what}: next_cursor {cursor!r} came before: the pages loop")
            given.add(cursor)

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


def _page(body: Any, what: str) -> tuple[list[str], str | None]:
    """One page of the contract, ``{"enrollments": [{"email": ...}, ...], "next_cursor": ...}``: its
    e-mails and the next cursor (None: the last page); an entry's other fields are not read. Raises
    :class:`Unavailable` (``classes.bad_reply``) naming what is off: a reply outside the contract is
    never compared as if it were the platform's truth."""
    if not isinstance(body, dict) or not isinstance(body.get("enrollments"), list):
        raise Unavailable(BAD_REPLY, f'{what}: the reply is not a JSON object with an "enrollments" list')
    cursor = body.get("next_cursor")
    if cursor is not None and not isinstance(cursor, str):
        raise Unavailable(BAD_REPLY, f"{what}: next_cursor must be a string or null, not {type(cursor).__name__}")
    emails = []
    for index, entry in enumerate(body["enrollments"], 1):
        email = entry.get("email") if isinstance(entry, dict) else None
        if not isinstance(email, str) or not email.strip():
            raise Unavailable(BAD_REPLY, f'{what}: enrollment {index} has no "email"')
        emails.append(email.strip().lower())
    return emails, cursor or None


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
