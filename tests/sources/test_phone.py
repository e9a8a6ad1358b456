"""Tests for engine.sources.phone: one E.164 form for a buyer's phone, whichever platform sent it."""

from __future__ import annotations

import pytest

from engine.sources.phone import normalize_phone

ANA_PHONE = "+5511999990001"


@pytest.mark.parametrize(
    ("number", "code", "country", "expected"),
    [
        ("999990001", "11", None, ANA_PHONE),  # DDD in a separate field
        ("99999-0001", "(11)", "BR", ANA_PHONE),
        ("11999990001", "11", "BR", ANA_PHONE),  # DDD already included
        ("11999990001", None, None, ANA_PHONE),
        ("5511999990001", "55", "BR", ANA_PHONE),  # 55 already included
        ("+55 (11) 99999-0001", None, None, ANA_PHONE),
        ("33334444", "21", "br", "+552133334444"),  # landline
        ("+1 415 555 0100", None, "US", "+14155550100"),  # foreign, with +
        ("447911123456", "", "GB", "+447911123456"),  # foreign: carries its DDI
        ("+351 912 345 678", None, None, "+351912345678"),
        ("+55 11 97e7e-2834", None, "BR", None),  # letters (corpus)
        ("999990001", "+55 11 9a", "BR", None),  # junk code ignored: DDD missing
        ("999990001", None, "BR", None),  # no DDD
        ("11899990001", None, "BR", None),  # 11 digits but no mobile 9
        ("01999990001", None, "BR", None),  # DDD with a zero
        ("123", None, None, None),
        ("+44 79", None, None, None),  # too short
        ("", "11", "BR", None),
        (None, "11", "BR", None),
    ],
)
def test_normalize_phone(number: str | None, code: str | None, country: str | None, expected: str | None) -> None:
    assert normalize_phone(number, code, country) == expected
