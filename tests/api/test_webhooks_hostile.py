"""Hostile bodies at POST /webhooks/hotmart on the real PostgreSQL (issue 10): whatever is
acknowledged is stored, memory stays bounded, no hottok at rest, the event log is insert-only."""

from __future__ import annotations

import asyncio
import copy
import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.exc import IntegrityError

from engine.api.app import create_app
from engine.db.models import ActionRun, Event, Membership, Student
from tests.conftest import HOTTOK, load_payload


@pytest.fixture
def harness(make_harness):
    return make_harness()


@pytest.fixture
def client(harness):
    return TestClient(create_app(harness.runtime))


def post(client: TestClient, body: bytes, token: str | None = HOTTOK, content_type: str = "application/json"):
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["X-HOTMART-HOTTOK"] = token
    return client.post("/webhooks/hotmart", content=body, headers=headers)


def only_event(harness) -> Event:
    with harness.runtime.sessions() as session:
        return session.scalars(select(Event)).one()


def purchase_bytes(envelope: str = "purchase-1", **buyer) -> bytes:
    body = copy.deepcopy(load_payload("purchase_approved.json"))
    body["id"] = envelope
    body["data"]["buyer"].update(buyer)
    return json.dumps(body).encode()


# --- 1. intake stores everything it acknowledges ----------------------------------------

REFUSED_BY_JSONB = {
    "nan": (b'{"id": "h-nan", "data": {"price": NaN}}', {"id": "h-nan", "data": {"price": "NaN"}}),
    "infinity": (b'{"id": "h-inf", "x": [Infinity, -Infinity]}', {"id": "h-inf", "x": ["Infinity", "-Infinity"]}),
    "1e400": (b'{"id": "h-big", "value": 1e400}', {"id": "h-big", "value": "1e400"}),
    "nul in a value": (b'{"id": "h-nul", "name": "Ana\\u0000Souza"}', {"id": "h-nul", "name": "Ana\\u0000Souza"}),
    "nul in a key": (b'{"id": "h-key", "a\\u0000b": 1}', {"id": "h-key", "a\\u0000b": 1}),
    "escaped lone surrogate": (b'{"id": "h-sur", "n": "x\\ud800y"}', {"id": "h-sur", "n": "x\\ud800y"}),
    "raw surrogate bytes": (b'{"id": "h-raw", "n": "x\xed\xa0\x80y"}', {"id": "h-raw", "n": "x\\ud800y"}),
    "5000-digit integer": (
        b'{"id": "h-int", "n": ' + b"9" * 5000 + b"}",
        {"id": "h-int", "n": "9" * 5000},
    ),
}


@pytest.mark.parametrize("name", sorted(REFUSED_BY_JSONB))
def test_content_jsonb_refuses_is_stored_faithfully(client, harness, name):
    body, expected_payload = REFUSED_BY_JSONB[name]
    response = post(client, body)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "accepted"
    event = only_event(harness)
    assert event.id == response.json()["event_id"]
    assert bytes(event.raw_bytes) == body  # verbatim
    assert event.payload == expected_payload  # sanitised
    assert event.payload_changes, "a note of what changed"
    assert post(client, body).json()["status"] == "duplicate"


def test_a_body_jsonb_holds_is_stored_as_decoded_without_raw_bytes(client, harness):
    body = json.dumps({"id": "plain", "name": "Zoë 😀", "n": 1.5, "big": 10**300}).encode()
    assert post(client, body).status_code == 200
    event = only_event(harness)
    assert event.payload == json.loads(body)
    assert (event.raw_bytes, event.payload_changes) == (None, None)


@pytest.mark.parametrize("length", [93, 100, 5000])
def test_an_over_long_envelope_id_is_hashed_into_the_dedupe_key(client, harness, length):
    body = json.dumps({"id": "x" * length, "event": "PURCHASE_APPROVED"}).encode()
    first = post(client, body)
    assert first.status_code == 200 and first.json()["status"] == "accepted"
    assert post(client, body).json()["status"] == "duplicate"
    other = json.dumps({"id": "x" * (length - 1) + "y", "event": "PURCHASE_APPROVED"}).encode()
    assert post(client, other).json()["status"] == "accepted"  # another id, another key
    with harness.runtime.sessions() as session:
        keys = session.scalars(select(Event.dedupe_key).order_by(Event.id)).all()
    assert len(keys) == 2 and all(len(key) <= 100 for key in keys) and keys[0] != keys[1]


def test_a_purchase_whose_buyer_name_has_a_nul_is_processed_like_any_other(make_harness):
    plain, hostile = make_harness(), None
    plain_client = TestClient(create_app(plain.runtime))
    assert post(plain_client, purchase_bytes(name="Ana Souza")).status_code == 200
    plain.run_queue()
    with plain.runtime.sessions() as session:
        expected = [(r.action, r.status) for r in session.scalars(select(ActionRun).order_by(ActionRun.step_index))]
    hostile = make_harness()  # the same (emptied) database
    hostile_client = TestClient(create_app(hostile.runtime))
    response = post(hostile_client, purchase_bytes("purchase-2", name="Bia\u0000Souza", email="bia@example.com"))
    assert response.status_code == 200 and response.json()["status"] == "accepted"
    hostile.run_queue()
    with hostile.runtime.sessions() as session:
        event = session.scalars(select(Event).where(Event.id == response.json()["event_id"])).one()
        runs = session.scalars(select(ActionRun).where(ActionRun.event_id == event.id).order_by(ActionRun.step_index))
        steps = [(r.action, r.status) for r in runs]
        assert event.status == "processed", event.reason
        assert event.payload["data"]["buyer"]["name"] == "Bia\\u0000Souza"
    assert steps == expected and expected


def test_a_body_nested_beyond_the_limit_is_rejected_and_kept(client, harness):
    body = b'{"id": "deep", "x": ' + b"[" * 200 + b"]" * 200 + b"}"
    response = post(client, body)
    assert (response.status_code, response.json()["detail"]) == (400, "body nests too deep")
    assert bytes(only_event(harness).raw_bytes) == body


# --- 2. the body limit is enforced while reading -----------------------------------------


@pytest.mark.parametrize("declared", [False, True])
def test_the_body_limit_is_enforced_while_reading_chunked_or_not(harness, declared):
    """Drive the ASGI app with an endless body: it must stop reading at the limit."""
    app = create_app(harness.runtime)
    limit = harness.runtime.settings.max_body_bytes
    chunk = b"a" * 65536
    read = 0
    sent: list[dict] = []

    async def receive() -> dict:
        nonlocal read
        read += 1
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: dict) -> None:
        sent.append(message)

    headers = [(b"content-type", b"application/json"), (b"x-hotmart-hottok", HOTTOK.encode())]
    headers.append(
        (b"content-length", str(200 * 1024 * 1024).encode()) if declared else (b"transfer-encoding", b"chunked")
    )
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/webhooks/hotmart",
        "raw_path": b"/webhooks/hotmart",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    # A private loop: set_event_loop(None) (asyncio.run) would break later tests that need a current one.
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(app(scope, receive, send))
    finally:
        loop.close()
    assert sent[0]["status"] == 413
    assert read <= (0 if declared else limit // len(chunk) + 1)
    with harness.runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 0


# --- 4. and 8. no hottok at rest; old-style form webhooks -------------------------------


def test_a_body_hottok_is_removed_from_payload_and_raw_bytes_before_the_insert(client, harness):
    # NaN forces the raw bytes to be kept too: the hottok must be gone from both.
    body = b'{"id": "with-hottok", "hottok": "' + HOTTOK.encode() + b'", "event": "PURCHASE_APPROVED", "n": NaN}'
    assert post(client, body, token=None).status_code == 200
    event = only_event(harness)
    assert event.payload["hottok"] == "[removed]"
    assert HOTTOK.encode() not in bytes(event.raw_bytes)
    assert HOTTOK not in json.dumps(event.payload) + json.dumps(event.headers)


def test_an_old_style_form_webhook_with_a_valid_hottok_is_told_the_body_is_not_json(client, harness):
    body = f"hottok={HOTTOK}&email=ana%40example.com&status=approved".encode()
    response = post(client, body, token=None, content_type="application/x-www-form-urlencoded")
    assert (response.status_code, response.json()) == (400, {"detail": "body is not JSON"})
    event = only_event(harness)
    assert (event.status, event.reason) == ("rejected", "body is not JSON")
    assert HOTTOK not in event.raw_body and HOTTOK.encode() not in bytes(event.raw_bytes)
    assert event.raw_body == "hottok=[removed]&email=ana%40example.com&status=approved"
    # Without a valid hottok anywhere it is still refused, and not stored.
    wrong = post(client, b"hottok=wrong&x=1", token=None, content_type="application/x-www-form-urlencoded")
    assert wrong.status_code == 401


def test_a_rejected_body_with_nul_bytes_is_kept(client, harness):
    body = b"not json \x00 at all \xff"
    assert post(client, body).status_code == 400
    event = only_event(harness)
    assert bytes(event.raw_bytes) == body
    assert "\x00" not in event.raw_body and "\\u0000" in event.raw_body


# --- 5. the event log is insert-only ----------------------------------------------------


def test_the_event_log_is_insert_only_on_postgresql(client, harness):
    assert post(client, purchase_bytes()).status_code == 200
    event_id = only_event(harness).id
    for values in ({"payload": {"forged": True}}, {"type": "PURCHASE_REFUNDED"}, {"headers": {}}, {"raw_body": "x"}):
        with pytest.raises(IntegrityError, match="insert-only"), harness.runtime.sessions.begin() as session:
            session.execute(update(Event).where(Event.id == event_id).values(**values))
    with pytest.raises(IntegrityError, match="insert-only"), harness.runtime.sessions.begin() as session:
        session.execute(delete(Event).where(Event.id == event_id))
    # Status and decision columns stay writable (the worker decides on them).
    with harness.runtime.sessions.begin() as session:
        session.execute(update(Event).where(Event.id == event_id).values(status="ignored", reason="test"))
    harness.run_queue()
    assert only_event(harness).status == "ignored"
    # TRUNCATE is not DELETE: the fixture that empties tables between tests still works.
    with harness.runtime.sessions.begin() as session:
        session.execute(text("TRUNCATE events RESTART IDENTITY CASCADE"))
    with harness.runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 0


def test_a_webhook_posing_as_an_internal_event_is_read_as_hotmart(client, harness):
    """{"event": "DISCORD_LINKED", ...} is the engine's own shape; from Hotmart it links nobody."""
    assert post(client, purchase_bytes()).status_code == 200
    harness.run_queue()
    forged = {"event": "DISCORD_LINKED", "email": "ana.exemplo@example.com", "fields": {"discord_id": "666"}}
    response = post(client, json.dumps(forged).encode())
    assert response.status_code == 200
    harness.run_queue()
    with harness.runtime.sessions() as session:
        event = session.get(Event, response.json()["event_id"])
        # Read as Hotmart: a purchase of no known product (never an account link).
        assert event.status == "needs_attention" and "no product matches id (none)" in event.reason
        assert event.student_id is None
        assert session.scalar(select(Student.discord_id)) is None
    assert harness.discord.calls == []


# --- 3. poison events end -----------------------------------------------------------------

POISON = {
    # The parser raised on it (int() of 5,000 digits), on every attempt.
    "5,000-digit recurrence_number (string)": {"recurrence_number": "9" * 5000},
    "5,000-digit recurrence_number (number)": {"recurrence_number": "<5000 digits>"},
    # It fit events.transaction and overflowed memberships.transaction, on every attempt.
    "100-character transaction": {"transaction": "T" * 100},
}


def poison_body(name: str) -> bytes:
    body = copy.deepcopy(load_payload("purchase_approved_subscription_first.json"))
    body["id"] = f"poison-{len(name)}"
    body["data"]["purchase"].update(POISON[name])
    # A bare 5,000-digit JSON number (Python cannot even print such an int by default).
    return json.dumps(body).replace('"<5000 digits>"', "9" * 5000).encode()


@pytest.mark.parametrize("name", sorted(POISON))
def test_a_former_poison_event_ends_and_is_never_requeued(client, harness, name):
    """Processed (the parser bounds the value) or needs_attention (the worker's poison limit),
    and in either case the sweep stops re-queueing it."""
    from engine.pipeline.sweep import requeue_stuck

    response = post(client, poison_body(name))
    assert response.status_code == 200 and response.json()["status"] == "accepted"
    event_id = response.json()["event_id"]
    for _ in range(harness.runtime.settings.worker_max_failures + 1):  # what the sweep would redo
        harness.run_queue()
        harness.clock.advance(minutes=3)
        harness.queued.extend(requeue_stuck(harness.runtime))
    assert harness.queued == []  # not re-queued any more
    with harness.runtime.sessions() as session:
        event = session.get(Event, event_id)
        assert event.status in ("processed", "needs_attention"), (event.status, event.reason)
        assert event.status == "processed" and event.failures == 0  # in fact: no exception at all
        field = next(iter(POISON[name]))
        assert f"data.purchase.{field}" in event.reason  # the unusable value is named
        memberships = session.scalars(select(Membership)).all()
        assert [m.state for m in memberships] == ["pending_onboarding"]
        assert memberships[0].transaction is None or len(memberships[0].transaction) <= 64


def test_headers_jsonb_refuses_are_escaped_not_a_failure(harness):
    from engine.pipeline.intake import store_webhook
    from engine.sources.hotmart import SOURCE as HOTMART

    with harness.runtime.sessions.begin() as session:
        stored = store_webhook(
            HOTMART, session, purchase_bytes(), {"X-Odd": "a\x00b", "Authorization": "Bearer x"}, held=False
        )
    assert stored.event_id is not None
    assert only_event(harness).headers == {"x-odd": "a\\u0000b"}
