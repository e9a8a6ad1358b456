"""The Hotmart parser never raises and bounds every value once (issue 10, outcome 3)."""

from __future__ import annotations

import copy

import pytest
from sqlalchemy import String

from engine.db.models import Event, Membership, Student
from engine.sources import hotmart
from tests.conftest import load_payload


def purchase(**changes) -> dict:
    body = copy.deepcopy(load_payload("purchase_approved_renewal.json"))
    for path, value in changes.items():
        node = body
        *parents, leaf = path.split("__")
        for key in parents:
            node = node[key]
        node[leaf] = value
    return body


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (3, 3),
        ("3", 3),
        (" 007 ", 7),
        (3.0, 3),
        (0, 0),
        (hotmart.MAX_INTEGER, hotmart.MAX_INTEGER),
        ("9" * 5000, None),
        ("0" * 5000 + "5", 5),
        (10**200, None),
        (1e300, None),
        (-1, None),
        (hotmart.MAX_INTEGER + 1, None),
        (True, None),
        ("²", None),
        ([], None),
    ],
)
def test_recurrence_number_is_read_by_a_bounded_integer_reader(value, expected):
    parsed = hotmart.parse(purchase(data__purchase__recurrence_number=value))
    assert parsed.recurrence_number == expected
    assert (expected is None) == any(p.startswith("data.purchase.recurrence_number") for p in parsed.problems)


@pytest.mark.parametrize("transaction", ["T" * 65, "T" * 100, 10**70, "x" * 5000])
def test_an_over_long_identifier_is_unusable_everywhere_at_once(transaction):
    parsed = hotmart.parse(purchase(data__purchase__transaction=transaction))
    envelope = hotmart.envelope(purchase(data__purchase__transaction=transaction))
    assert parsed.transaction is None and envelope.transaction is None
    assert "data.purchase.transaction: longer than 64 characters" in parsed.problems


def test_a_64_character_identifier_is_kept():
    parsed = hotmart.parse(purchase(data__purchase__transaction="T" * 64))
    assert parsed.transaction == "T" * 64 and parsed.problems == ()


def test_over_long_email_and_name():
    parsed = hotmart.parse(purchase(data__buyer__email="a" * 320 + "@example.com", data__buyer__name="N" * 500))
    assert parsed.email is None and "data.buyer.email: not an e-mail address" in parsed.problems
    assert parsed.name == "N" * hotmart.MAX_NAME_LENGTH


def test_the_columns_are_as_wide_as_the_parser_allows():
    """Every column a parsed value reaches holds the parser's widest value (one rule, every write)."""
    columns = {
        hotmart.MAX_CODE_LENGTH: [Event.transaction, Membership.transaction, Membership.subscriber_code],
        hotmart.MAX_EMAIL_LENGTH: [Event.email, Student.email],
        hotmart.MAX_NAME_LENGTH: [Student.name],
    }
    for width, attributes in columns.items():
        for attribute in attributes:
            column_type = attribute.property.columns[0].type
            assert isinstance(column_type, String) and column_type.length >= width, attribute


@pytest.mark.parametrize("hottok", ["\ud800", "a\x00b", "é", 5, None, ["x"]])
def test_verify_hottok_never_raises(hottok):
    assert hotmart.verify_hottok(None, {"hottok": hottok}, "secret") is False
    assert hotmart.verify_hottok(hottok if isinstance(hottok, str) else None, None, "secret") is False
