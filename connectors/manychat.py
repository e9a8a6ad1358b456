"""ManyChat step adapter: WhatsApp contact tags, custom fields and flows.

Tags and fields are addressed by name and must already exist in the account. Maps
``add_tag`` / ``remove_tag`` / ``set_field`` / ``trigger_flow`` steps and the
reconciliation queries onto :class:`~connectors.manychat_client.ManyChatClient`, which
owns the wire: endpoints, pacing, 429s, the flow budget and judging replies. The client
raises :class:`~connectors.errors.WireError`; a step turns it into its failed result, a
query (``find_subscriber``, ``subscriber_tags``) lets it through.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from connectors.base import Step, StepContext, StepResult, StudentRef
from connectors.errors import RateLimited, Rejected, Unauthorized, Unavailable, WireError
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
    UNAVAILABLE,
    ManyChatClient,
    answered_in_json,
)

__all__ = ["DEFAULT_CONSENT_PHRASE", "ManyChatConnector"]

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
            except WireError as exc:
                if exc.error != SUBSCRIBER_NOT_FOUND or looked_up:
                    raise
                # The stored id went stale (contact deleted/merged): resolve once more.
                log.warning("manychat: stored subscriber %s unknown, resolving again", sid)
                sid, _ = self._resolve(ctx.student, create=create, use_stored=False)
                learned["manychat_subscriber_id"] = sid
                detail = handler(sid, step)
        except WireError as exc:
            log.warning("manychat: %s failed: %s (%s)", step.action, exc.error, exc.detail)
            return exc.result.with_data(**learned)
        return StepResult.done(detail, **learned)

    def find_subscriber(self, student: StudentRef) -> str | None:
        """The student's subscriber id (stored, else by email, else by phone), or None.

        Raises :class:`~connectors.errors.WireError` when ManyChat cannot be asked (401, 5xx ...).
        """
        if student.manychat_subscriber_id:
            return student.manychat_subscriber_id
        return self._lookup(student)

    def subscriber_tags(self, subscriber_id: str) -> set[str] | None:
        """The contact's tag names (getInfo, manychat.md 2.3), or None when ManyChat does not know it.

        Paced under getInfo's own limit (10/s). Raises :class:`~connectors.errors.WireError`
        when ManyChat cannot be asked (401, 5xx, still rate limited ...).
        """
        try:
            what = f"reading contact {subscriber_id}"
            data = self._wire.call("GET", GET_INFO, what, params={"subscriber_id": subscriber_id})
        except Rejected as exc:
            if exc.error in (SUBSCRIBER_NOT_FOUND, BAD_REQUEST) and answered_in_json(exc):
                return None
            raise
        tags = data.get("tags") if isinstance(data, dict) else None
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
            self._wire.call("POST", path, f"tag {tag!r}", json={"subscriber_id": _wire_id(sid), "tag_name": tag})
        return f"tags {verb}: {', '.join(tags)} (subscriber {sid})"

    def _set_field(self, sid: str, step: Step) -> str:
        field, value = step.params["field"], step.params["value"]
        body = {"subscriber_id": _wire_id(sid), "field_name": field, "field_value": value}
        self._wire.call("POST", SET_FIELD, f"field {field!r}", json=body)
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
            raise RateLimited(
                RATE_LIMITED,
                f"{label} not sent: ManyChat allows {FLOWS_PER_SUBSCRIBER_HOUR} flows per "
                f"subscriber per hour and subscriber {sid} reached it",
            )
        # The body is exactly these two keys; ManyChat takes no variables here, which is
        # why fields are set by an earlier set_field step.
        try:
            self._wire.call(
                "POST",
                SEND_FLOW,
                label,
                json={"subscriber_id": _wire_id(sid), "flow_ns": flow_ns},
                deduped=False,
                before_send=before_send,
                not_sent=not_sent,
            )
        except WireError as exc:
            if exc.maybe_delivered:
                self._wire.count_flow(sid)
            raise
        self._wire.count_flow(sid)
        return f"{label} sent (subscriber {sid})"

    # ------------------------------------------------------------ subscribers

    def _resolve(self, student: StudentRef, *, create: bool, use_stored: bool) -> tuple[str, bool]:
        """(subscriber id, found by lookup/creation rather than taken as stored)."""
        if use_stored and student.manychat_subscriber_id:
            return student.manychat_subscriber_id, False
        sid = self._lookup(student)
        if sid:
            return sid, True
        if not create:
            raise Rejected(
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
            try:
                data = self._wire.call("GET", FIND, f"looking up the contact by {key}", params={key: value})
            except (Unauthorized, Unavailable, RateLimited):
                raise
            except WireError as exc:
                if not answered_in_json(exc):
                    raise
                continue  # any other error body is "not found": ManyChat's exact reply is undocumented
            sid = _subscriber_id(data)
            if sid:
                return sid
            # empty data: not found (one of the two documented shapes)
        return None

    def _create(self, student: StudentRef) -> str:
        phone = _e164(student.phone)
        if not phone:
            raise Rejected(
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
        try:
            data = self._wire.call("POST", CREATE, "creating the WhatsApp contact", json=body)
        except WireError as exc:
            # ManyChat's words are quoted in the detail; its 400 does not carry the id.
            if "already exist" not in exc.detail.lower():
                raise
            sid = self._lookup(student)  # find the existing contact instead
            if sid:
                return sid
            raise Rejected(
                SUBSCRIBER_NOT_FOUND,
                f"ManyChat says a contact for {_who(student)} already exists but it cannot be "
                "found by email or phone. An admin must find it in ManyChat (and add the "
                "student's email there), then retry this step.",
            ) from exc
        sid = _subscriber_id(data)
        if sid:
            log.info("manychat: created WhatsApp contact %s", sid)
            return sid
        raise Unavailable(UNAVAILABLE, "createSubscriber succeeded without a subscriber id")


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
