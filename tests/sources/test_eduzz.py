"""Eduzz's contract (issue 23 §3): every documented-format fixture parses into the canonical
event, the HMAC-SHA256 `x-signature` is verified on the raw bytes, redeliveries share a dedupe
key, an invoice of two products is two bodies."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest

from engine.sources import CANONICAL_EVENTS, SOURCES, detect
from engine.sources.eduzz import SOURCE as EDUZZ
from engine.sources.eduzz.events import CANONICAL, CONTRACT_STATUS

DATA = Path(__file__).parent.parent / "data" / "eduzz"
SECRET = "eduzz-test-secret"

EXPECTED = {  # fixture: (canonical, Eduzz's name, product, ignored)
    "invoice_paid": ("PURCHASE_APPROVED", "myeduzz.invoice_paid", "123456", False),
    "invoice_paid_two_products": ("PURCHASE_APPROVED", "myeduzz.invoice_paid", "123456", False),
    "invoice_refunded": ("PURCHASE_REFUNDED", "myeduzz.invoice_refunded", "123456", False),
    "invoice_chargeback": ("PURCHASE_CHARGEBACK", "myeduzz.invoice_chargeback", "123456", False),
    "invoice_canceled": ("PURCHASE_CANCELED", "myeduzz.invoice_canceled", "123456", False),
    "invoice_overdue": ("PURCHASE_DELAYED", "myeduzz.invoice_overdue", "123456", False),
    "invoice_waiting_payment": ("PURCHASE_BILLET_PRINTED", "myeduzz.invoice_waiting_payment", "123456", False),
    "invoice_expired": ("PURCHASE_EXPIRED", "myeduzz.invoice_expired", "123456", False),
    "contract_card_attempted_late": ("PURCHASE_DELAYED", "myeduzz.contract_card_attempted", "654321", False),
    "contract_status_updated_canceled": (
        "SUBSCRIPTION_CANCELLATION",
        "myeduzz.contract_status_updated",
        "654321",
        False,
    ),
    "contract_pix_attempted_up_to_date": (
        "myeduzz.contract_pix_attempted",
        "myeduzz.contract_pix_attempted",
        "654321",
        True,
    ),
}


def raw(name: str) -> bytes:
    return (DATA / f"{name}.json").read_bytes()


def signature(body: bytes, secret: str = SECRET) -> dict[str, str]:
    # Computed here, independently of the engine: hex HMAC-SHA256 of the raw body.
    return {"x-signature": hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}


def test_eduzz_is_a_registered_source():
    assert SOURCES["eduzz"] is EDUZZ


def test_every_fixture_is_covered_and_marked_as_built():
    assert sorted(p.stem for p in DATA.glob("*.json")) == sorted(EXPECTED)
    assert "built, not captured" in (DATA / "README.md").read_text()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_fixture_parses_into_the_canonical_event(name):
    body = json.loads(raw(name))
    event = EDUZZ.parse(body)
    canonical, own, product, ignored = EXPECTED[name]
    assert (event.event_type, event.source_event, event.product_id) == (canonical, own, product)
    assert bool(event.ignored) is ignored
    assert event.email == "bia.exemplo@example.com"
    assert event.name == "Bia Exemplo Lima"
    assert event.phone == "+5521988880002"
    assert event.problems == ()
    assert event.creation_date is not None
    json.dumps(event.fields())
    assert detect(body) is EDUZZ


def test_the_mapping_tables_speak_only_the_canonical_vocabulary():
    assert set(CANONICAL.values()) <= CANONICAL_EVENTS
    assert {v for v in CONTRACT_STATUS.values() if v} <= CANONICAL_EVENTS
    assert set(CONTRACT_STATUS) == {
        "upToDate",
        "awaitingPayment",
        "late",
        "canceled",
        "defaulter",
        "suspended",
        "trial",
        "finished",
        "free",
    }


def test_an_invoice_of_two_products_is_one_body_per_product():
    body = json.loads(raw("invoice_paid_two_products"))
    parts = EDUZZ.split(body)
    assert [EDUZZ.parse(part).product_id for part in parts] == ["123456", "654321"]
    keys = {EDUZZ.dedupe_key(b"", EDUZZ.envelope(part)) for part in parts}
    assert keys == {
        "eduzz:0b1c2d3e-0000-4000-8000-00000000e099:123456",
        "eduzz:0b1c2d3e-0000-4000-8000-00000000e099:654321",
    }
    assert EDUZZ.split(json.loads(raw("invoice_paid"))) == [json.loads(raw("invoice_paid"))]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_good_signature_verifies(name):
    body = raw(name)
    assert EDUZZ.verify(body, signature(body), {}, SECRET, json.loads(body)) is True


def test_bad_signatures_do_not_verify():
    body = raw("invoice_paid")
    good = signature(body)
    assert EDUZZ.verify(body, {}, {}, SECRET, None) is False
    assert EDUZZ.verify(body, {"x-signature": ""}, {}, SECRET, None) is False
    assert EDUZZ.verify(body, signature(body, "other"), {}, SECRET, None) is False
    assert EDUZZ.verify(body + b"\n", good, {}, SECRET, None) is False  # the raw bytes count
    assert EDUZZ.verify(body, good, {}, "", None) is False
    assert EDUZZ.verify(body, {}, {"signature": good["x-signature"]}, SECRET, None) is False  # not a query param
    sha1 = hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest()
    assert EDUZZ.verify(body, {"x-signature": sha1}, {}, SECRET, None) is False
    assert EDUZZ.verify(body, {"x-signature": "\ud800"}, {}, SECRET, None) is False


def test_a_known_signature_vector():
    vector = hmac.new(b"key", b"The quick brown fox jumps over the lazy dog", hashlib.sha256).hexdigest()
    # RFC 4231-style known answer for this classic input.
    assert vector == "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
    assert EDUZZ.verify(b"The quick brown fox jumps over the lazy dog", {"x-signature": vector}, {}, "key", None)


def test_a_redelivery_shares_the_key_and_other_events_do_not():
    keys = {name: EDUZZ.dedupe_key(raw(name), EDUZZ.envelope(json.loads(raw(name)))) for name in EXPECTED}
    assert len(set(keys.values())) == len(keys)
    again = json.dumps(json.loads(raw("invoice_paid"))).encode()
    assert EDUZZ.dedupe_key(again, EDUZZ.envelope(json.loads(again))) == keys["invoice_paid"]


@pytest.mark.parametrize(
    "body", [None, [], "x", {"event": 5}, {"data": {"items": "x"}}, {"data": {"items": [1]}}, {"event": "sun."}]
)
def test_odd_bodies_never_raise(body):
    EDUZZ.parse(body)
    EDUZZ.dedupe_key(b"{}", EDUZZ.envelope(body))
    EDUZZ.split(body)
