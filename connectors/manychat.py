"""ManyChat step adapter: WhatsApp contact tags, custom fields and flows.

Tags and fields are addressed by name and must already exist in the account. Maps
``add_tag`` / ``remove_tag`` / ``set_field`` / ``trigger_flow`` steps and the
reconciliation queries onto :class:`~connectors.manychat_client.ManyChatClient`, which
owns the wire: endpoints, pacing, 429s, the flow budget and judging replies.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from connectors.base import Step, StepContext, StepResult, StudentRef
from connectors.manychat_client import (
    ADD_TAG,
    BAD_REQUEST,
    CREATE,
    FIND,
    FLOWS_PER_SUBSCRIBER_HOUR,
    GET_INFO,
    RATE_LIMITED,
    REMOVE_TAG,
    SEND_FLOW,
    SET_FIELD,
    SUBSCRIBER_NOT_FOUND,
    UNAUTHORIZED,
    UNAVAILABLE,
    ManyChatClient,
    ManyChatError,
    flow_failure,
    idempotent_failure,
)

__all__ = ["DEFAULT_CONSENT_PHRASE", "ManyChatConnector", "ManyChatError"]

log = logging.getLogger(__name__)

DEFAULT_CONSENT_PHRASE = "Aceito receber mensagens do curso pelo WhatsApp"


class ManyChatConnector:
    """Runs ``add_tag``, ``remove_tag``, ``set_field`` and ``trigger_flow`` steps."""

    name = "manychat"
    actions = frozenset({"add_tag", "remove_tag", "set_field", "trigger_flow"})

    def __init__(self, token: str, *, consent_phrase: str = DEFAULT_CONSENT_PHRASE, **wire: Any):
        """``wire``: the :class:`ManyChatClient` options (api_base, transport, timeout, sleep,
        clock, rates, limiter, wrap_transport), passed through unchanged."""
        self._wire = ManyChatClient(token, **wire)
        self._consent_phrase = consent_phrase

    # ------------------------------------------------------------------ public

    def run(self, step: Step, ctx: StepContext) -> StepResult:
        handler = {
            "add_tag": self._add_tags,
            "remove_tag": self._remove_tags,
            "set_field": self._set_field,
            # The flow is the one request that cannot be repeated: it tells the engine just
            # before it is written to the network (the step is "in flight" from then on).
            "trigger_flow": lambda sid, step: self._trigger_flow(sid, step, ctx.before_send, ctx.not_sent),
        }.get(step.action)
        if handler is None:
            return StepResult.failed(BAD_REQUEST, f"unknown ManyChat action {step.action!r}")
        problem = _check_params(step)
        if problem:
            return StepResult.failed(BAD_REQUEST, f"{step.action}: {problem}")

        create = bool(step.params.get("create_if_missing"))
        learned: dict[str, Any] = {}
        try:
            sid, looked_up = self._resolve(ctx.student, create=create, use_stored=True)
            if looked_up:
                learned["manychat_subscriber_id"] = sid
            try:
                detail = handler(sid, step)
            except ManyChatError as exc:
                if exc.error != SUBSCRIBER_NOT_FOUND or looked_up:
                    raise
                # The stored id went stale (contact deleted/merged): resolve once more.
                log.warning("manychat: stored subscriber %s unknown, resolving again", sid)
                sid, _ = self._resolve(ctx.student, create=create, use_stored=False)
                learned["manychat_subscriber_id"] = sid
                detail = handler(sid, step)
        except ManyChatError as exc:
            log.warning("manychat: %s failed: %s (%s)", step.action, exc.error, exc.detail)
            return exc.result(**learned)
        return StepResult.done(detail, **learned)

    def find_subscriber(self, student: StudentRef) -> str | None:
        """The student's subscriber id (stored, else by email, else by phone), or None.

        Raises :class:`ManyChatError` when ManyChat cannot be asked (401, 5xx ...).
        """
        if student.manychat_subscriber_id:
            return student.manychat_subscriber_id
        return self._lookup(student)

    def subscriber_tags(self, subscriber_id: str) -> set[str] | None:
        """The contact's tag names (getInfo, manychat.md 2.3), or None when ManyChat does not know it.

        Paced under getInfo's own limit (10/s). Raises :class:`ManyChatError` when ManyChat
        cannot be asked (401, 5xx, still rate limited ...).
        """
        reply = self._wire.call("GET", GET_INFO, params={"subscriber_id": subscriber_id})
        if not reply.ok:
            if reply.error in (SUBSCRIBER_NOT_FOUND, BAD_REQUEST) and reply.json_body:
                return None
            raise idempotent_failure(reply, f"reading contact {subscriber_id}")
        tags = reply.data.get("tags") if isinstance(reply.data, dict) else None
        return {str(tag.get("name")) for tag in tags or [] if isinstance(tag, dict) and tag.get("name")}

    def close(self) -> None:
        self._wire.close()

    # --------------------------------------------------------------- actions

    def _add_tags(self, sid: str, step: Step) -> str:
        return self._tags(sid, _as_list(step.params["tags"]), ADD_TAG, "added")

    def _remove_tags(self, sid: str, step: Step) -> str:
        # Per-subscriber endpoint: /fb/page/removeTag* would delete the tag account-wide.
        return self._tags(sid, _as_list(step.params["tags"]), REMOVE_TAG, "removed")

    def _tags(self, sid: str, tags: list[str], path: str, verb: str) -> str:
        for tag in tags:
            reply = self._wire.call("POST", path, json={"subscriber_id": _wire_id(sid), "tag_name": tag})
            if not reply.ok:
                raise idempotent_failure(reply, f"tag {tag!r}")
        return f"tags {verb}: {', '.join(tags)} (subscriber {sid})"

    def _set_field(self, sid: str, step: Step) -> str:
        field, value = step.params["field"], step.params["value"]
        body = {"subscriber_id": _wire_id(sid), "field_name": field, "field_value": value}
        reply = self._wire.call("POST", SET_FIELD, json=body)
        if not reply.ok:
            raise idempotent_failure(reply, f"field {field!r}")
        return f"field {field} set (subscriber {sid})"

    def _trigger_flow(
        self,
        sid: str,
        step: Step,
        before_send: Callable[[], None] | None = None,
        not_sent: Callable[[], None] | None = None,
    ) -> str:
        flow_ns = step.params["flow_ns"]
        label = f"flow {step.params.get('flow') or flow_ns!r} ({flow_ns})"
        if not self._wire.flow_budget_left(sid):
            raise ManyChatError(
                RATE_LIMITED,
                f"{label} not sent: ManyChat allows {FLOWS_PER_SUBSCRIBER_HOUR} flows per "
                f"subscriber per hour and subscriber {sid} reached it",
                retryable=True,
            )
        # The body is exactly these two keys; ManyChat takes no variables here, which is
        # why fields are set by an earlier set_field step.
        reply = self._wire.call(
            "POST",
            SEND_FLOW,
            json={"subscriber_id": _wire_id(sid), "flow_ns": flow_ns},
            before_send=before_send,
            not_sent=not_sent,
        )
        if reply.ok or (reply.error == UNAVAILABLE and reply.sent):
            self._wire.count_flow(sid)
        if reply.ok:
            return f"{label} sent (subscriber {sid})"
        raise flow_failure(reply, label)

    # ------------------------------------------------------------ subscribers

    def _resolve(self, student: StudentRef, *, create: bool, use_stored: bool) -> tuple[str, bool]:
        """(subscriber id, found by lookup/creation rather than taken as stored)."""
        if use_stored and student.manychat_subscriber_id:
            return student.manychat_subscriber_id, False
        sid = self._lookup(student)
        if sid:
            return sid, True
        if not create:
            raise ManyChatError(
                SUBSCRIBER_NOT_FOUND,
                f"no ManyChat contact found for {_who(student)} (by email and phone). An admin "
                "must make first contact with the student in ManyChat, then retry this step.",
            )
        return self._create(student), True

    def _lookup(self, student: StudentRef) -> str | None:
        for key, value in (("email", student.email), ("phone", _e164(student.phone))):
            if not value:
                continue
            # httpx percent-encodes the "+" of the phone as %2B, as ManyChat needs.
            reply = self._wire.call("GET", FIND, params={key: value})
            if reply.ok:
                sid = _subscriber_id(reply.data)
                if sid:
                    return sid
                continue  # empty data: not found (one of the two documented shapes)
            if reply.error in (UNAUTHORIZED, UNAVAILABLE, RATE_LIMITED) or not reply.json_body:
                raise idempotent_failure(reply, f"looking up the contact by {key}")
            # Any other error body is "not found": ManyChat's exact reply is undocumented.
        return None

    def _create(self, student: StudentRef) -> str:
        phone = _e164(student.phone)
        if not phone:
            raise ManyChatError(
                SUBSCRIBER_NOT_FOUND,
                f"no ManyChat contact found for {_who(student)} and no phone number to create a "
                "WhatsApp contact. An admin must make first contact in ManyChat, then retry.",
            )
        first, _, last = (student.name or "").strip().partition(" ")
        body: dict[str, Any] = {"whatsapp_phone": phone, "has_opt_in_whatsapp": True}
        if first:
            body["first_name"] = first
        if last.strip():
            body["last_name"] = last.strip()
        if student.email:
            body["email"] = student.email
            body["has_opt_in_email"] = False  # required with email; consent was for WhatsApp
        body["consent_phrase"] = self._consent_phrase
        reply = self._wire.call("POST", CREATE, json=body)
        if reply.ok:
            sid = _subscriber_id(reply.data)
            if sid:
                log.info("manychat: created WhatsApp contact %s", sid)
                return sid
            raise ManyChatError(UNAVAILABLE, "createSubscriber succeeded without a subscriber id", retryable=True)
        if "already exist" in reply.message.lower():
            # The 400 does not carry the id: find the existing contact instead.
            sid = self._lookup(student)
            if sid:
                return sid
            raise ManyChatError(
                SUBSCRIBER_NOT_FOUND,
                f"ManyChat says a contact for {_who(student)} already exists but it cannot be "
                "found by email or phone. An admin must find it in ManyChat (and add the "
                "student's email there), then retry this step.",
            )
        raise idempotent_failure(reply, "creating the WhatsApp contact")


# ------------------------------------------------------------------ helpers


def _check_params(step: Step) -> str | None:
    params = step.params
    if step.action in ("add_tag", "remove_tag"):
        tags = _as_list(params.get("tags"))
        if not tags or not all(isinstance(tag, str) and tag for tag in tags):
            return "params need 'tags': a non-empty list of tag names"
    elif step.action == "set_field":
        if not isinstance(params.get("field"), str) or not params["field"]:
            return "params need 'field' (custom field name)"
        if "value" not in params:
            return "params need 'value'"
    elif step.action == "trigger_flow" and (not isinstance(params.get("flow_ns"), str) or not params["flow_ns"]):
        return "params need 'flow_ns' (the id from the flow editor URL)"
    return None


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _subscriber_id(data: Any) -> str | None:
    if isinstance(data, dict) and data.get("id") not in (None, ""):
        return str(data["id"])  # ids arrive as strings; keep them as strings
    return None


def _wire_id(sid: str) -> int | str:
    # Documented as an integer in request bodies; Python ints have no 2^53 problem.
    return int(sid) if sid.isdigit() else sid


def _e164(phone: str | None) -> str | None:
    if not phone:
        return None
    phone = phone.strip().replace(" ", "")
    return phone if phone.startswith("+") else f"+{phone}"


def _who(student: StudentRef) -> str:
    parts = [student.email or ""]
    if student.phone:
        parts.append(student.phone)
    return " / ".join(part for part in parts if part) or f"student {student.id}"
