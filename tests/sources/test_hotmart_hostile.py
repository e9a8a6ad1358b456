"""The Hotmart parser never raises and bounds every value once (issue 10, outcome 3)."""

from __future__ import annotations

import copy

import pytest
from sqlalchemy import String

from engine.db.models import Event, Membership, Student
from engine.sources import hotmart
from tests.conftest import examples, load_payload


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


@pytest.mark.slow
def test_the_parser_never_raises_on_any_value_in_any_known_field():
    """Property: arbitrary JSON (huge integers, non-finite floats, NUL, surrogates) anywhere."""
    import json

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from tests.strategies import FIELDS, REFERENCES, json_values, set_path

    @given(index=st.integers(0, len(REFERENCES) - 1), data=st.data())
    @settings(max_examples=examples(200), deadline=None, suppress_health_check=list(HealthCheck))
    def parse_one(index: int, data) -> None:
        body = json.loads(json.dumps(REFERENCES[index]))
        paths = [path for i, path in FIELDS if i == index]
        for path in sorted(data.draw(st.sets(st.sampled_from(paths), max_size=6)), key=len, reverse=True):
            value = data.draw(json_values | st.sampled_from(["9" * 5000, 10**4000, float("nan"), "T" * 100]))
            try:
                set_path(body, path, value)
            except (KeyError, IndexError, TypeError):
                continue
        parsed = hotmart.parse(body)
        hotmart.envelope(body)
        parsed.fields()
        for value, limit in ((parsed.transaction, 64), (parsed.subscriber_code, 64), (parsed.email, 320)):
            assert value is None or len(value) <= limit
        assert parsed.name is None or len(parsed.name) <= hotmart.MAX_NAME_LENGTH
        assert parsed.recurrence_number is None or 0 <= parsed.recurrence_number <= hotmart.MAX_INTEGER

    parse_one()
