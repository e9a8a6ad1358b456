"""ManyChat connector: WhatsApp contact tags, custom fields and flows.

Wire facts come from ``shared/reference/manychat.md``. The points that shape this code:

* a reply succeeded only if HTTP is 2xx **and** the body says ``"status": "success"``;
  ManyChat sometimes answers HTTP 200 with an error body, and unknown paths answer
  with an HTML page;
* tags and fields are addressed by name and must already exist in the account;
* ``sendFlow`` has no idempotency key and no delivery receipt, so once a request may
  have reached ManyChat it is never sent again automatically;
* per-endpoint rate limits (10/s default, 20/s sendFlow, 50/s findBySystemField,
  100 sendFlow per subscriber per hour) are paced client-side.

The worker is synchronous (Huey), so this uses a blocking ``httpx.Client``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from connectors.base import Step, StepContext, StepResult, StudentRef
from connectors.throttle import Limiter, LocalLimiter

log = logging.getLogger(__name__)

SUBSCRIBER_NOT_FOUND = "manychat.subscriber_not_found"
UNKNOWN_TAG = "manychat.unknown_tag"
UNKNOWN_FIELD = "manychat.unknown_field"
UNKNOWN_FLOW = "manychat.unknown_flow"
UNAUTHORIZED = "manychat.unauthorized"
UNAVAILABLE = "manychat.unavailable"
RATE_LIMITED = "manychat.rate_limited"
BAD_REQUEST = "manychat.bad_request"

DEFAULT_CONSENT_PHRASE = "Aceito receber mensagens do curso pelo WhatsApp"

_FIND = "/fb/subscriber/findBySystemField"
_GET_INFO = "/fb/subscriber/getInfo"
_CREATE = "/fb/subscriber/createSubscriber"
_ADD_TAG = "/fb/subscriber/addTagByName"
_REMOVE_TAG = "/fb/subscriber/removeTagByName"
_SET_FIELD = "/fb/subscriber/setCustomFieldByName"
_SEND_FLOW = "/fb/sending/sendFlow"

# Requests per second for each endpoint, by class (manychat.md section 3: per-endpoint ceilings).
_DEFAULT_RATES = {"default": 10.0, "send_flow": 20.0, "find": 50.0}
_ENDPOINT_CLASS = {_FIND: "find", _SEND_FLOW: "send_flow"}
_FLOWS_PER_SUBSCRIBER_HOUR = 100

# A 429 happens before ManyChat acts, so repeating the call is safe for every endpoint.
_BACKOFF = (1.0, 2.0, 4.0)
# A Retry-After longer than this would pin a worker thread; hand the step back instead.
_MAX_RETRY_AFTER = 30.0

_NOT_FOUND_WORDS = ("not found", "does not exist", "doesn't exist", "not exist", "no such", "unknown")
_RATE_LIMIT_WORDS = ("too many requests", "rate limit")


class ManyChatError(Exception):
    """A failed ManyChat outcome; ``run`` turns it into a failed :class:`StepResult`."""

    def __init__(
        self,
        error: str,
        detail: str,
        *,
        retryable: bool = False,
        maybe_delivered: bool = False,
    ):
        super().__init__(f"{error}: {detail}")
        self.error = error
        self.detail = detail
        self.retryable = retryable
        self.maybe_delivered = maybe_delivered

    def result(self, **data: Any) -> StepResult:
        return StepResult.failed(
            self.error,
            self.detail,
            retryable=self.retryable,
            maybe_delivered=self.maybe_delivered,
            **data,
        )


@dataclass(frozen=True)
class _Reply:
    """One judged HTTP exchange."""

    ok: bool
    data: Any = None
    status: int | None = None  # HTTP status; None when no response came back
    error: str | None = None  # error class when not ok
    message: str = ""  # ManyChat's error text (or ours), for details and logs
    sent: bool = True  # False only when the request surely never reached ManyChat
    json_body: bool = True  # False: the body was not a JSON object (HTML 404 ...)


class ManyChatConnector:
    """Runs ``add_tag``, ``remove_tag``, ``set_field`` and ``trigger_flow`` steps."""

    name = "manychat"
    actions = frozenset({"add_tag", "remove_tag", "set_field", "trigger_flow"})

    def __init__(
        self,
        token: str,
        *,
        api_base: str = "https://api.manychat.com",
        transport: httpx.BaseTransport | None = None,
        timeout: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rates: dict[str, float] | None = None,
        consent_phrase: str = DEFAULT_CONSENT_PHRASE,
        limiter: Limiter | None = None,
    ):
        self._client = httpx.Client(
            base_url=api_base,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            transport=transport,
            timeout=timeout,
        )
        # The network transport says when it starts writing a request (httpcore's trace), so a flow
        # is marked in flight only then: not while connecting. A test double is handed the request
        # at once, so it is marked just before.
        self._traced = transport is None
        self._timeout = timeout
        self._sleep = sleep
        self._clock = clock
        self._consent_phrase = consent_phrase
        merged = {**_DEFAULT_RATES, **(rates or {})}
        self._rates = merged
        # One key per endpoint (ManyChat's limits are per endpoint), shared by every worker
        # process when the limiter lives in Redis.
        self._limiter = limiter or LocalLimiter(clock)
        self._flows_sent: dict[str, deque[float]] = {}
        self._flows_lock = threading.Lock()

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
        reply = self._call("GET", _GET_INFO, params={"subscriber_id": subscriber_id})
        if not reply.ok:
            if reply.error in (SUBSCRIBER_NOT_FOUND, BAD_REQUEST) and reply.json_body:
                return None
            raise _idempotent_failure(reply, f"reading contact {subscriber_id}")
        tags = reply.data.get("tags") if isinstance(reply.data, dict) else None
        return {str(tag.get("name")) for tag in tags or [] if isinstance(tag, dict) and tag.get("name")}

    def close(self) -> None:
        self._client.close()

    # --------------------------------------------------------------- actions

    def _add_tags(self, sid: str, step: Step) -> str:
        return self._tags(sid, _as_list(step.params["tags"]), _ADD_TAG, "added")

    def _remove_tags(self, sid: str, step: Step) -> str:
        # Per-subscriber endpoint: /fb/page/removeTag* would delete the tag account-wide.
        return self._tags(sid, _as_list(step.params["tags"]), _REMOVE_TAG, "removed")

    def _tags(self, sid: str, tags: list[str], path: str, verb: str) -> str:
        for tag in tags:
            reply = self._call("POST", path, json={"subscriber_id": _wire_id(sid), "tag_name": tag})
            if not reply.ok:
                raise _idempotent_failure(reply, f"tag {tag!r}")
        return f"tags {verb}: {', '.join(tags)} (subscriber {sid})"

    def _set_field(self, sid: str, step: Step) -> str:
        field, value = step.params["field"], step.params["value"]
        body = {"subscriber_id": _wire_id(sid), "field_name": field, "field_value": value}
        reply = self._call("POST", _SET_FIELD, json=body)
        if not reply.ok:
            raise _idempotent_failure(reply, f"field {field!r}")
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
        if not self._flow_budget_left(sid):
            raise ManyChatError(
                RATE_LIMITED,
                f"{label} not sent: ManyChat allows {_FLOWS_PER_SUBSCRIBER_HOUR} flows per "
                f"subscriber per hour and subscriber {sid} reached it",
                retryable=True,
            )
        # The body is exactly these two keys; ManyChat takes no variables here, which is
        # why fields are set by an earlier set_field step.
        reply = self._call(
            "POST",
            _SEND_FLOW,
            json={"subscriber_id": _wire_id(sid), "flow_ns": flow_ns},
            before_send=before_send,
            not_sent=not_sent,
        )
        if reply.ok or (reply.error == UNAVAILABLE and reply.sent):
            self._count_flow(sid)
        if reply.ok:
            return f"{label} sent (subscriber {sid})"
        raise _flow_failure(reply, label)

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
            reply = self._call("GET", _FIND, params={key: value})
            if reply.ok:
                sid = _subscriber_id(reply.data)
                if sid:
                    return sid
                continue  # empty data: not found (one of the two documented shapes)
            if reply.error in (UNAUTHORIZED, UNAVAILABLE, RATE_LIMITED) or not reply.json_body:
                raise _idempotent_failure(reply, f"looking up the contact by {key}")
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
        reply = self._call("POST", _CREATE, json=body)
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
        raise _idempotent_failure(reply, "creating the WhatsApp contact")

    # ------------------------------------------------------------- flow budget

    def _flow_budget_left(self, sid: str) -> bool:
        with self._flows_lock:
            sent = self._flows_sent.get(sid)
            if not sent:
                return True
            horizon = self._clock() - 3600
            while sent and sent[0] <= horizon:
                sent.popleft()
            return len(sent) < _FLOWS_PER_SUBSCRIBER_HOUR

    def _count_flow(self, sid: str) -> None:
        with self._flows_lock:
            self._flows_sent.setdefault(sid, deque()).append(self._clock())

    # ------------------------------------------------------------------- HTTP

    def _pace(self, path: str) -> None:
        rate = self._rates.get(_ENDPOINT_CLASS.get(path, "default"), self._rates["default"])
        # A second of burst, as the fake and ManyChat's per-second counting allow.
        wait = self._limiter.reserve(f"manychat:{path}", rate, rate)
        if wait > 0:
            self._sleep(wait)

    def _in_flight_hook(self, before_send: Callable[[], None] | None) -> dict[str, Any] | None:
        """Call ``before_send`` once, when the request is about to be written (see ``_traced``)."""
        if before_send is None:
            return None
        if not self._traced:
            before_send()
            return None
        called = False

        def trace(event: str, info: dict[str, Any]) -> None:
            nonlocal called
            if event in _WRITE_STARTED and not called:
                called = True
                before_send()  # raising here aborts the request: nothing is sent unmarked

        return {"trace": trace}

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: dict[str, Any] | None = None,
        before_send: Callable[[], None] | None = None,
        not_sent: Callable[[], None] | None = None,
    ) -> _Reply:
        for attempt in range(len(_BACKOFF) + 1):
            self._pace(path)
            try:
                response = self._client.request(
                    method, path, params=params, json=json, extensions=self._in_flight_hook(before_send)
                )
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                # Nothing left this process: certainly not delivered.
                return _Reply(False, error=UNAVAILABLE, sent=False, message=_transport_text(exc))
            except httpx.TimeoutException:
                return _Reply(False, error=UNAVAILABLE, message=f"no reply within {self._timeout:g}s")
            except httpx.HTTPError as exc:  # connection dropped mid-exchange
                return _Reply(False, error=UNAVAILABLE, message=_transport_text(exc))
            reply = _judge(response)
            log.debug("manychat: %s %s -> %s", method, path, response.status_code)
            if reply.error != RATE_LIMITED or attempt == len(_BACKOFF):
                return reply
            delay = _retry_after(response)
            if delay is None:
                delay = _BACKOFF[attempt]
            if delay > _MAX_RETRY_AFTER:
                return reply
            log.info("manychat: %s rate limited, retrying in %.1fs", path, delay)
            if not_sent is not None:
                not_sent()  # a 429 is a refusal: nothing is in flight while we wait
            self._sleep(delay)
        raise AssertionError("unreachable")


# httpcore's trace events that mean "the request's bytes go out now".
_WRITE_STARTED = frozenset({"http11.send_request_headers.started", "http2.send_request_headers.started"})


# ----------------------------------------------------------------- judging


def _judge(response: httpx.Response) -> _Reply:
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = None
    if body is not None and response.is_success and body.get("status") == "success":
        return _Reply(True, data=body.get("data"), status=status)

    message = _error_text(body) if body is not None else f"HTTP {status} with a non-JSON body"
    is_json = body is not None
    lowered = message.lower()
    if status in (401, 403):
        error = UNAUTHORIZED
    elif status == 429 or any(word in lowered for word in _RATE_LIMIT_WORDS):
        error = RATE_LIMITED
    elif status >= 500:
        error = UNAVAILABLE
    elif response.is_success and (body is None or body.get("status") != "error"):
        # A 2xx we cannot read: ManyChat may well have acted on it.
        error, message = UNAVAILABLE, f"HTTP {status} with an unreadable body"
    else:
        error = _classify(lowered, body)
    return _Reply(False, status=status, error=error, message=message, json_body=is_json)


def _classify(lowered: str, body: dict[str, Any] | None) -> str:
    """Configuration errors are told apart only by ManyChat's message text."""
    if body is not None and body.get("code") == 2011:  # "subscriber not found" per one gateway doc
        return SUBSCRIBER_NOT_FOUND
    if any(word in lowered for word in _NOT_FOUND_WORDS):
        for noun, error in (("tag", UNKNOWN_TAG), ("field", UNKNOWN_FIELD), ("flow", UNKNOWN_FLOW)):
            if noun in lowered:
                return error
        if "subscriber" in lowered or "contact" in lowered:
            return SUBSCRIBER_NOT_FOUND
    return BAD_REQUEST


def _error_text(body: dict[str, Any]) -> str:
    parts = [str(body.get("message") or "")]
    details = body.get("details")
    if isinstance(details, dict):
        for item in details.get("messages") or []:
            if isinstance(item, dict) and item.get("message"):
                parts.append(str(item["message"]))
    text = "; ".join(part for part in parts if part) or "error without a message"
    return text[:500]


def _idempotent_failure(reply: _Reply, what: str) -> ManyChatError:
    retryable = reply.error in (UNAVAILABLE, RATE_LIMITED)
    return ManyChatError(reply.error or BAD_REQUEST, _detail(reply, what), retryable=retryable)


def _flow_failure(reply: _Reply, label: str) -> ManyChatError:
    if reply.error == UNAVAILABLE and reply.sent:
        # Timeout after sending, 5xx or an unreadable 2xx: it may have gone out.
        return ManyChatError(
            UNAVAILABLE,
            f"{label}: {reply.message or 'no usable reply'}. The message may have been "
            "delivered; check the contact's chat in ManyChat before sending it again by hand.",
            retryable=False,
            maybe_delivered=True,
        )
    # Pre-send failures (connect error, 429) may be retried; rejections are final.
    retryable = reply.error in (UNAVAILABLE, RATE_LIMITED)
    return ManyChatError(reply.error or BAD_REQUEST, _detail(reply, label), retryable=retryable)


def _detail(reply: _Reply, what: str) -> str:
    said = f"ManyChat said: {reply.message}" if reply.status is not None else reply.message
    hint = {
        UNKNOWN_TAG: "create the tag in ManyChat (Settings > Tags), then retry",
        UNKNOWN_FIELD: "create the custom field in ManyChat (Settings > Fields), then retry",
        UNKNOWN_FLOW: "check the flow_ns in the rules against ManyChat's flow URL",
        UNAUTHORIZED: "the API key is wrong, regenerated or the account lost Pro",
        SUBSCRIBER_NOT_FOUND: "an admin must make first contact with the student in ManyChat",
    }.get(reply.error or "")
    status = f" (HTTP {reply.status})" if reply.status is not None else ""
    return f"{what}: {said}{status}" + (f"; {hint}" if hint else "")


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


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # HTTP-date form: fall back to our own backoff


def _transport_text(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
