"""Tests for engine.sources.hotmart: the reference payloads, the real corpus, odd input."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.sources.hotmart import (
    HOTMART_EVENTS,
    HotmartEvent,
    dedupe_key,
    parse,
    verify_hottok,
)
from tests.conftest import CORPUS, REFERENCE  # noqa: E402

CORPUS_FILES = sorted(CORPUS.glob("*.json"))

ANA = "ana.exemplo@example.com"
ANA_PHONE = "+5511999990001"


def load(path: Path) -> object:
    return json.loads(path.read_text(encoding="utf-8"))


def ref(name: str) -> dict:
    return load(REFERENCE / f"{name}.json")


def ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, tz=UTC)


# --- reference payloads -------------------------------------------------------------------

# file: (event_type, product_id, transaction, subscriber_code, recurrence_number,
#        date_next_charge, offer_code)
REFERENCE_CASES = {
    "purchase_approved": (
        "PURCHASE_APPROVED", "1111111", "HP10000000000001", None, None, None, "wks3x9pd",
    ),
    "purchase_approved_subscription_first": (
        "PURCHASE_APPROVED", "2222222", "HP20000000000001", "EXA1B2C3", 1,
        ms(1739620800000), "bsc4m7qa",
    ),
    "purchase_approved_renewal": (
        "PURCHASE_APPROVED", "2222222", "HP20000000000003", "EXA1B2C3", 3,
        ms(1744718400000), "bsc4m7qa",
    ),
    "purchase_complete": (
        "PURCHASE_COMPLETE", "2222222", "HP20000000000001", "EXA1B2C3", 1,
        ms(1739620800000), "bsc4m7qa",
    ),
    "purchase_protest": (
        "PURCHASE_PROTEST", "1111111", "HP10000000000001", None, None, None, "wks3x9pd",
    ),
    "purchase_refunded": (
        "PURCHASE_REFUNDED", "1111111", "HP10000000000001", None, None, None, "wks3x9pd",
    ),
    "purchase_chargeback": (
        "PURCHASE_CHARGEBACK", "2222222", "HP20000000000002", "EXA1B2C3", 2,
        ms(1744718400000), "bsc4m7qa",
    ),
    "purchase_canceled": (
        "PURCHASE_CANCELED", "1111111", "HP10000000000002", None, None, None, "wks3x9pd",
    ),
    "purchase_delayed": (
        "PURCHASE_DELAYED", "2222222", "HP20000000000004", "EXA1B2C3", 4,
        ms(1745150400000), "prm8k2zt",
    ),
    "purchase_billet_printed": (
        "PURCHASE_BILLET_PRINTED", "1111111", "HP10000000000003", None, None, None, "wks3x9pd",
    ),
    "purchase_expired": (
        "PURCHASE_EXPIRED", "1111111", "HP10000000000003", None, None, None, "wks3x9pd",
    ),
    "subscription_cancellation": (
        "SUBSCRIPTION_CANCELLATION", "2222222", None, "EXA1B2C3", None,
        ms(1747742400000), None,
    ),
    "switch_plan": (
        "SWITCH_PLAN", "2222222", None, "EXA1B2C3", None, ms(1744718400000), "prm8k2zt",
    ),
    "update_subscription_charge_date": (
        "UPDATE_SUBSCRIPTION_CHARGE_DATE", "2222222", None, "EXA1B2C3", None,
        datetime(2025, 4, 20, 12, 0, tzinfo=UTC), "prm8k2zt",
    ),
    "purchase_out_of_shopping_cart": (
        "PURCHASE_OUT_OF_SHOPPING_CART", "1111111", None, None, None, None, "wks3x9pd",
    ),
    "club_first_access": ("CLUB_FIRST_ACCESS", "2222222", None, None, None, None, None),
    "club_module_completed": ("CLUB_MODULE_COMPLETED", "2222222", None, None, None, None, None),
}  # fmt: skip


def test_every_reference_payload_has_a_case() -> None:
    assert sorted(p.stem for p in REFERENCE.glob("*.json")) == sorted(REFERENCE_CASES)


@pytest.mark.parametrize("name", sorted(REFERENCE_CASES))
def test_reference_payload_key_fields(name: str) -> None:
    event_type, product_id, transaction, subscriber, recurrence, next_charge, offer = REFERENCE_CASES[name]
    body = ref(name)
    event = parse(body)

    assert event.id == body["id"]
    assert event.event_type == event_type
    assert event.version == "2.0.0"
    assert event.product_id == product_id
    assert event.email == ANA
    assert event.transaction == transaction
    assert event.subscriber_code == subscriber
    assert event.recurrence_number == recurrence
    assert event.date_next_charge == next_charge
    if next_charge is not None:
        assert event.date_next_charge.utcoffset().total_seconds() == 0
    assert event.offer_code == offer
    assert event.creation_date == ms(body.get("creation_date") or body["creationDate"])
    assert event.is_test is False
    assert event.problems == ()


@pytest.mark.parametrize(
    ("name", "plan_id", "plan_name"),
    [
        ("purchase_approved", None, None),
        ("purchase_approved_renewal", "900001", "Mensal Básico"),
        ("purchase_delayed", "900002", "Mensal Premium"),
        ("subscription_cancellation", "900002", "Mensal Premium"),
        ("switch_plan", "900002", "Mensal Premium"),
        ("update_subscription_charge_date", "900002", "Mensal Premium"),
    ],
)
def test_reference_plan(name: str, plan_id: str | None, plan_name: str | None) -> None:
    event = parse(ref(name))
    assert (event.plan_id, event.plan_name) == (plan_id, plan_name)


@pytest.mark.parametrize(
    ("name", "phone"),
    [
        ("purchase_approved", ANA_PHONE),  # checkout_phone + checkout_phone_code
        ("purchase_out_of_shopping_cart", ANA_PHONE),  # buyer.phone, DDD included
        ("subscription_cancellation", ANA_PHONE),  # subscriber.phone dddCell + cell
        ("switch_plan", None),
        ("club_first_access", None),
    ],
)
def test_reference_phone(name: str, phone: str | None) -> None:
    assert parse(ref(name)).phone == phone


def test_purchase_fields_status_payment_name() -> None:
    event = parse(ref("purchase_billet_printed"))
    assert event.purchase_status == "BILLET_PRINTED"
    assert event.payment_type == "BILLET"
    assert event.name == "Ana Exemplo Souza"
    assert event.product_name == "Workshop Exemplo de Automação"


def test_club_first_access_reads_camel_case_creation_date() -> None:
    body = ref("club_first_access")
    assert "creation_date" not in body
    assert parse(body).creation_date == datetime(2025, 1, 15, 12, 20, tzinfo=UTC)


def test_switch_plan_takes_the_current_plan_wherever_it_is() -> None:
    body = ref("switch_plan")
    body["data"]["plans"].reverse()
    assert body["data"]["plans"][0]["current"] is False
    event = parse(body)
    assert (event.plan_id, event.plan_name, event.offer_code) == (
        "900002",
        "Mensal Premium",
        "prm8k2zt",
    )


def test_switch_plan_without_a_current_plan_is_a_problem() -> None:
    body = ref("switch_plan")
    for plan in body["data"]["plans"]:
        plan["current"] = False
    event = parse(body)
    assert (event.plan_id, event.offer_code) == (None, None)
    assert "data.plans: no entry with current: true" in event.problems


def test_fields_is_flat_and_serialisable() -> None:
    fields = parse(ref("purchase_approved_renewal")).fields()
    assert fields == {
        "event_type": "PURCHASE_APPROVED",
        "product_id": "2222222",
        "offer_code": "bsc4m7qa",
        "email": ANA,
        "name": "Ana Exemplo Souza",
        "phone": ANA_PHONE,
        "transaction": "HP20000000000003",
        "subscriber_code": "EXA1B2C3",
        "recurrence_number": 3,
        "date_next_charge": "2025-04-15T12:00:00+00:00",
        "creation_date": "2025-03-15T12:00:08+00:00",
        "purchase_status": "APPROVED",
        "payment_type": "CREDIT_CARD",
        "plan_id": "900001",
        "plan_name": "Mensal Básico",
        "is_test": False,
    }
    json.dumps(fields)


# --- the real (anonymised) corpus ---------------------------------------------------------


def has_letters(value: object) -> bool:
    return isinstance(value, str) and re.search(r"[A-Za-z]", value) is not None


def expected_corpus_problems(body: dict) -> set[str]:
    """The anonymiser's odd values (corpus README), found independently of the parser."""
    data = body["data"]
    buyer = data.get("buyer") or {}
    expected = set()
    if isinstance(data.get("subscription"), str):
        expected.add("data.subscription: expected an object, got a string")
    if isinstance(buyer.get("address"), str):
        expected.add("data.buyer.address: expected an object, got a string")
    if has_letters(buyer.get("checkout_phone")):
        expected.add("data.buyer.checkout_phone: not a plausible phone number")
    if has_letters(buyer.get("checkout_phone_code")):
        expected.add("data.buyer.checkout_phone_code: not a plausible area code")
    if has_letters(buyer.get("phone")):
        expected.add("data.buyer.phone: not a plausible phone number")
    return expected


def test_corpus_is_there() -> None:
    assert len(CORPUS_FILES) == 87


def test_corpus_has_the_odd_values_the_readme_describes() -> None:
    """Guards the next test against silently checking nothing."""
    counts = {
        problem: sum(problem in expected_corpus_problems(load(p)) for p in CORPUS_FILES)
        for problem in (
            "data.subscription: expected an object, got a string",
            "data.buyer.address: expected an object, got a string",
            "data.buyer.checkout_phone: not a plausible phone number",
            "data.buyer.phone: not a plausible phone number",
        )
    }
    assert all(count > 0 for count in counts.values()), counts


@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda p: p.stem)
def test_corpus_payload_parses_and_reports_odd_values(path: Path) -> None:
    body = load(path)
    event = parse(body)

    assert event.event_type in HOTMART_EVENTS
    assert event.event_type == re.sub(r"-\d+$", "", path.stem).replace("-", "_").upper()
    assert event.id == body["id"]
    assert event.creation_date is not None
    data = body["data"]
    raw_emails = [(data.get(k) or {}).get("email") for k in ("buyer", "subscriber", "user")]
    raw_email = next((e for e in raw_emails if e), None)  # switch-plan-1 has none left
    assert event.email == (raw_email.strip().lower() if raw_email else None)
    assert event.product_id is None or isinstance(event.product_id, str)
    assert set(event.problems) == expected_corpus_problems(body)
    if "data.buyer.checkout_phone: not a plausible phone number" in event.problems:
        assert event.phone is None


def test_corpus_string_product_id_and_camel_case_date() -> None:
    body = load(CORPUS / "club-module-completed-1.json")
    assert isinstance(body["data"]["product"]["id"], str)
    assert parse(body).product_id == body["data"]["product"]["id"]
    body = load(CORPUS / "club-first-access-1.json")
    assert parse(body).creation_date == ms(body["creationDate"])


def test_corpus_subscription_as_ip_string_loses_only_what_lived_there() -> None:
    event = parse(load(CORPUS / "update-subscription-charge-date-1.json"))
    assert event.subscriber_code == "KGB81NYZ"  # data.subscriber, not data.subscription
    assert event.offer_code == "kb7r7c54"
    assert event.product_id is None  # was data.subscription.product.id
    assert event.date_next_charge is None
    assert event.problems == ("data.subscription: expected an object, got a string",)


# --- odd bodies and values ----------------------------------------------------------------


@pytest.mark.parametrize("body", [[], [1, 2], "x", "", None, 3, 2.5, True])
def test_non_object_body_never_raises(body: object) -> None:
    event = parse(body)
    assert isinstance(event, HotmartEvent)
    assert event.event_type is None
    assert event.id is None
    assert event.is_test is False
    assert event.problems == ("body: expected a JSON object",)
    assert set(event.fields()) >= {"event_type", "email", "is_test"}


@pytest.mark.parametrize("junk", ["192.168.4.57", [], [1, 2], 42, True])
@pytest.mark.parametrize("key", ["product", "buyer", "purchase", "subscription", "subscriber", "user", "plan", "offer"])
def test_junk_where_an_object_belongs_is_reported(key: str, junk: object) -> None:
    for name in REFERENCE_CASES:
        body = ref(name)
        body["data"][key] = junk
        event = parse(body)
        assert event.event_type == REFERENCE_CASES[name][0]
        assert any(p.startswith(f"data.{key}: expected an object, got ") for p in event.problems)


def test_deep_nesting_is_not_walked() -> None:
    deep: dict = {}
    node = deep
    for _ in range(100_000):
        node["x"] = {}
        node = node["x"]
    body = ref("purchase_approved")
    body["data"]["product"]["content"] = deep
    assert parse(body).product_id == "1111111"


def test_unknown_event_is_still_parsed_and_normalised() -> None:
    body = ref("purchase_approved")
    body["event"] = "  something_new "
    event = parse(body)
    assert event.event_type == "SOMETHING_NEW"
    assert event.event_type not in HOTMART_EVENTS
    assert event.transaction == "HP10000000000001"


@pytest.mark.parametrize(
    ("path", "value", "field", "expected", "problem"),
    [
        # identifiers: integers become strings, other types are problems
        (("data", "product", "id"), 0, "product_id", "0", None),
        (("data", "product", "id"), 1111111.0, "product_id", "1111111", None),
        (("data", "product", "id"), {"id": 1}, "product_id", None, "data.product.id"),
        (("data", "purchase", "transaction"), ["HP1"], "transaction", None,
         "data.purchase.transaction"),
        # recurrence number: int, numeric string, integral float
        (("data", "purchase", "recurrence_number"), "3", "recurrence_number", 3, None),
        (("data", "purchase", "recurrence_number"), 3.0, "recurrence_number", 3, None),
        (("data", "purchase", "recurrence_number"), "três", "recurrence_number", None,
         "data.purchase.recurrence_number"),
        (("data", "purchase", "recurrence_number"), "²", "recurrence_number", None,
         "data.purchase.recurrence_number"),
        (("data", "purchase", "recurrence_number"), True, "recurrence_number", None,
         "data.purchase.recurrence_number"),
        # dates: ms as int, float or numeric string; ISO strings; junk
        (("creation_date",), "1741006809000", "creation_date", ms(1741006809000), None),
        (("creation_date",), 1741006809000.0, "creation_date", ms(1741006809000), None),
        (("creation_date",), "2025-03-03T10:00:09-03:00", "creation_date",
         datetime(2025, 3, 3, 13, 0, 9, tzinfo=UTC), None),
        (("creation_date",), "yesterday", "creation_date", None, "creation_date"),
        (("creation_date",), 10**30, "creation_date", None, "creation_date"),
        (("data", "purchase", "date_next_charge"), "soon", "date_next_charge", None,
         "data.purchase.date_next_charge"),
        # e-mail: trimmed and lower-cased, junk reported
        (("data", "buyer", "email"), "  Ana.Exemplo@Example.COM ", "email", ANA, None),
        (("data", "buyer", "email"), "not-an-email", "email", None, "data.buyer.email"),
        (("data", "buyer", "email"), 12, "email", None, "data.buyer.email"),
        # missing optional values are not problems: null and blank strings
        (("data", "purchase", "offer"), None, "offer_code", None, None),
        (("data", "purchase", "transaction"), "   ", "transaction", None, None),
        (("event",), 5, "event_type", None, "event"),
    ],
)  # fmt: skip
def test_field_values(path: tuple[str, ...], value: object, field: str, expected: object, problem: str | None) -> None:
    body = ref("purchase_approved")
    node = body
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    event = parse(body)
    assert getattr(event, field) == expected
    if problem is None:
        assert event.problems == ()
    else:
        assert len(event.problems) == 1 and event.problems[0].startswith(problem)


@pytest.mark.parametrize(("product_id", "is_test"), [(0, True), ("0", True), (1111111, False)])
def test_test_event_fingerprint(product_id: object, is_test: bool) -> None:
    body = ref("purchase_approved")
    body["data"]["product"]["id"] = product_id
    assert parse(body).is_test is is_test
    assert parse(body).fields()["is_test"] is is_test


def test_foreign_buyer_phone_uses_the_checkout_country() -> None:
    body = ref("purchase_approved")
    body["data"]["purchase"]["checkout_country"] = {"name": "Portugal", "iso": "PT"}
    body["data"]["buyer"]["checkout_phone"] = "351912345678"
    body["data"]["buyer"]["checkout_phone_code"] = ""
    event = parse(body)
    assert event.phone == "+351912345678"
    assert event.problems == ()


def test_subscriber_phone_falls_back_to_landline() -> None:
    body = ref("subscription_cancellation")
    body["data"]["subscriber"]["phone"] = {
        "dddPhone": "21",
        "phone": "33334444",
        "dddCell": "",
        "cell": "",
    }
    assert parse(body).phone == "+552133334444"


def test_parse_does_not_mutate_the_body() -> None:
    body = load(CORPUS / "purchase-approved-1.json")
    before = copy.deepcopy(body)
    parse(body)
    assert body == before


# --- dedupe_key, verify_hottok -------------------------------------------


def test_dedupe_key_uses_the_envelope_id() -> None:
    raw = (REFERENCE / "purchase_refunded.json").read_bytes()
    event = parse(json.loads(raw))
    assert dedupe_key(raw, event) == "hotmart:5b0e8c1e-1f0a-4c52-9d1e-0a0000000006"


@pytest.mark.parametrize("envelope_id", [None, "", "   ", 123])
def test_dedupe_key_falls_back_to_the_body_hash(envelope_id: object) -> None:
    body = ref("purchase_refunded")
    body["id"] = envelope_id
    raw = json.dumps(body).encode()
    key = dedupe_key(raw, parse(body))
    assert key == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert dedupe_key(raw + b" ", parse(body)) != key


@pytest.mark.parametrize(
    ("header", "body", "expected", "ok"),
    [
        ("s3cret", {}, "s3cret", True),
        ("s3cret", None, "s3cret", True),
        (None, {"hottok": "s3cret"}, "s3cret", True),  # body fallback
        ("", {"hottok": "s3cret"}, "s3cret", True),  # empty header: fallback too
        ("wrong", {"hottok": "s3cret"}, "s3cret", False),  # the header wins
        ("s3cret ", {}, "s3cret", False),
        (None, {"hottok": "wrong"}, "s3cret", False),
        (None, {"hottok": 123}, "123", False),  # body field must be a string
        (None, ["s3cret"], "s3cret", False),  # body must be an object
        (None, {}, "s3cret", False),
        ("", {}, "", False),  # empty expected never matches
        (None, {"hottok": ""}, "", False),
        ("anything", {}, "", False),
        ("sécret", {}, "sécret", True),  # non-ASCII compares as bytes
    ],
)
def test_verify_hottok(header: str | None, body: object, expected: str, ok: bool) -> None:
    assert verify_hottok(header, body, expected) is ok


def test_hotmart_events_is_the_catalogue() -> None:
    assert len(HOTMART_EVENTS) == 16
    assert {"PURCHASE_APPROVED", "SWITCH_PLAN", "ORDER_FULFILLMENT"} <= HOTMART_EVENTS
    assert "SUBSCRIPTION_RENEWED" not in HOTMART_EVENTS  # §4: does not exist
