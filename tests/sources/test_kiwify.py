"""Kiwify's contract (issue 23 §2): every documented-format fixture parses into the canonical
event, the HMAC-SHA1 `signature` is verified on the raw bytes, redeliveries share a dedupe key."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest

from engine.sources import CANONICAL_EVENTS, NOT_JSON, SOURCES, detect
from engine.sources.kiwify import SOURCE as KIWIFY
from engine.sources.kiwify.events import CANONICAL

DATA = Path(__file__).parent.parent / "data" / "kiwify"
FIXTURES = sorted(DATA.glob("*.json"))
TOKEN = "kiwify-test-token"

EXPECTED = {
    "order_approved": ("PURCHASE_APPROVED", "a1b2c3"),
    "order_refunded": ("PURCHASE_REFUNDED", "a1b2c3"),
    "chargeback": ("PURCHASE_CHARGEBACK", "a1b2c3"),
    "order_rejected": ("PURCHASE_CANCELED", "a1b2c3"),
    "billet_created": ("PURCHASE_BILLET_PRINTED", "a1b2c3"),
    "pix_created": ("PURCHASE_BILLET_PRINTED", "a1b2c3"),
    "subscription_renewed": ("PURCHASE_APPROVED", "d4e5f6"),
    "subscription_late": ("PURCHASE_DELAYED", "d4e5f6"),
    "subscription_canceled": ("SUBSCRIPTION_CANCELLATION", "d4e5f6"),
    "abandoned_cart": ("PURCHASE_OUT_OF_SHOPPING_CART", "a1b2c3"),
}


def raw(name: str) -> bytes:
    return (DATA / f"{name}.json").read_bytes()


def signed(body: bytes, token: str = TOKEN) -> dict[str, str]:
    # Computed here, independently of the engine: HMAC-SHA1 of the raw body, lowercase hex.
    return {"signature": hmac.new(token.encode(), body, hashlib.sha1).hexdigest()}


def test_kiwify_is_a_registered_source():
    assert SOURCES["kiwify"] is KIWIFY


def test_every_fixture_is_covered_and_marked_as_built():
    assert sorted(p.stem for p in FIXTURES) == sorted(EXPECTED)
    assert "built, not captured" in (DATA / "README.md").read_text()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_fixture_parses_into_the_canonical_event(name):
    body = json.loads(raw(name))
    event = KIWIFY.parse(body)
    canonical, product = EXPECTED[name]
    assert (event.event_type, event.source_event, event.product_id) == (canonical, name, product)
    assert event.email == "ana.exemplo@example.com"
    assert event.name == "Ana Exemplo Souza"
    assert event.phone == "+5511999990001"
    assert event.problems == ()
    assert event.creation_date is not None
    fields = event.fields()
    json.dumps(fields)
    assert fields["event_type"] == canonical
    assert detect(body) is KIWIFY  # engine dry-run without --source


def test_a_subscription_is_keyed_on_subscription_id_and_carries_its_paid_until_date():
    renewed = KIWIFY.parse(json.loads(raw("subscription_renewed")))
    late = KIWIFY.parse(json.loads(raw("subscription_late")))
    assert renewed.subscriber_code == late.subscriber_code == "5c0e8a2b-7d1f-4e3a-8b6c-2f9d1e0a7b02"
    assert renewed.transaction != late.transaction  # each charge a new order_id
    assert renewed.fields()["date_next_charge"] == "2026-04-10T14:01:00+00:00"
    assert renewed.plan_name == "Mensal"


def test_the_mapping_table_speaks_only_the_canonical_vocabulary():
    assert set(CANONICAL.values()) <= CANONICAL_EVENTS
    assert KIWIFY.events == frozenset(CANONICAL)


def test_an_unknown_event_keeps_its_own_name():
    event = KIWIFY.parse({"webhook_event_type": "order_teleported", "order_id": "x"})
    assert (event.event_type, event.source_event) == ("order_teleported", "order_teleported")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_good_signature_verifies(name):
    body = raw(name)
    assert KIWIFY.verify(body, {}, signed(body), TOKEN, json.loads(body)) is True


def test_bad_signatures_do_not_verify():
    body = raw("order_approved")
    good = signed(body)["signature"]
    assert KIWIFY.verify(body, {}, {}, TOKEN, None) is False  # missing
    assert KIWIFY.verify(body, {}, {"signature": ""}, TOKEN, None) is False
    assert KIWIFY.verify(body, {}, signed(body, "another-token"), TOKEN, None) is False
    assert KIWIFY.verify(body + b" ", {}, {"signature": good}, TOKEN, None) is False  # the raw bytes count
    assert KIWIFY.verify(body, {}, {"signature": good}, "", None) is False  # no token configured
    assert KIWIFY.verify(body, {"x-signature": good}, {}, TOKEN, None) is False  # a header is not it
    assert KIWIFY.verify(b"not json", {}, signed(b"not json"), TOKEN, NOT_JSON) is True
    assert KIWIFY.verify(body, {}, {"signature": "\ud800"}, TOKEN, None) is False  # never raises


def test_a_known_signature_vector():
    # sha1 HMAC of b'{"order_id": "1"}' keyed by "secret", worked out once by hand with hmac/hashlib.
    vector = hmac.new(b"secret", b'{"order_id": "1"}', hashlib.sha1).hexdigest()
    assert len(vector) == 40 and vector == vector.lower()
    assert KIWIFY.verify(b'{"order_id": "1"}', {}, {"signature": vector}, "secret", None)
    assert KIWIFY.verify(b'{"order_id": "1"}', {}, {"signature": vector.upper()}, "secret", None)


def dedupe(name: str, body: bytes | None = None) -> str:
    body = raw(name) if body is None else body
    return KIWIFY.dedupe_key(body, KIWIFY.envelope(json.loads(body)))


def test_a_redelivery_shares_the_key_and_other_events_do_not():
    keys = {name: dedupe(name) for name in EXPECTED}
    assert len(set(keys.values())) == len(keys)
    assert keys["order_approved"] == "kiwify:9f2c1d7e-4b8a-4c1e-9a53-0d6e5b7c1a01:order_approved"
    reformatted = json.dumps(json.loads(raw("order_approved"))).encode()  # same event, other bytes
    assert dedupe("order_approved", reformatted) == keys["order_approved"]
    assert keys["subscription_renewed"].startswith("kiwify:5c0e8a2b-7d1f-4e3a-8b6c-2f9d1e0a7b02:")
    assert keys["abandoned_cart"].startswith("kiwify:sha256:")


def test_each_failed_retry_of_a_charge_is_its_own_event():
    body = json.loads(raw("subscription_late"))
    again = json.loads(raw("subscription_late"))
    again["Subscription"]["next_payment"] = "2026-04-13T14:01:00.000Z"
    again["Subscription"]["customer_access"]["access_until"] = "2026-04-13T14:01:00.000Z"
    first = KIWIFY.dedupe_key(b"", KIWIFY.envelope(body))
    second = KIWIFY.dedupe_key(b"", KIWIFY.envelope(again))
    assert first != second


@pytest.mark.parametrize("body", [None, [], "x", 1, {"Customer": "x"}, {"Customer": {"email": 5}}, {"order_id": {}}])
def test_odd_bodies_never_raise(body):
    event = KIWIFY.parse(body)
    assert event.email is None
    KIWIFY.dedupe_key(b"{}", KIWIFY.envelope(body))
