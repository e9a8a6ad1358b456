"""Reading a webhook body: dotted paths out of any decoded JSON value, bounded, never raising.

Shared by every source (section numbers (§) are those of Hotmart's reference, the first source).

:class:`Reader` reads only the paths it is asked for (no recursion), so odd input costs
nothing. A value that is present but unusable (wrong type, unparsable date ...) becomes
``None`` plus a human-readable entry in :attr:`Reader.problems`; a missing optional field
(absent, ``null`` or an empty string) is not a problem, since Hotmart omits fields it has
no value for (§3.1).

Every value is bounded here, once, so every column it reaches later takes it the same way at
every write: identifiers (transaction, subscriber code, product/offer/plan ids) longer than
:data:`MAX_CODE_LENGTH` and e-mails longer than :data:`MAX_EMAIL_LENGTH` are unusable (a problem),
names are cut to :data:`MAX_NAME_LENGTH`, integers outside :data:`MAX_INTEGER` are unusable.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import TypeVar

# The widest value each kind of field may carry (the database columns are at least this wide).
MAX_CODE_LENGTH = 64
MAX_EMAIL_LENGTH = 320
MAX_NAME_LENGTH = 200
MAX_INTEGER = 1_000_000  # recurrence_number: a subscription's charge count

_T = TypeVar("_T")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# ASCII digits only: str.isdigit() accepts "²" (int() then fails), \d accepts "١".
_DIGITS = re.compile(r"[0-9]+")
_NUMERIC = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?")
# What a typed phone number may contain besides digits. Anything else (letters ...) makes
# the number implausible rather than being silently stripped away.
PHONE_CHARS = re.compile(r"[0-9\s+().-]+")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")
_COUNTRY_ISO = re.compile(r"[A-Za-z]{2}")


def first(*values: _T | None) -> _T | None:
    """The first value that is not None (all candidates are read, so all problems show)."""
    return next((v for v in values if v is not None), None)


def kind(value: object) -> str:
    """The JSON name of a decoded value's type, for problem messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _from_ms(ms: float) -> datetime | None:
    try:
        return _EPOCH + timedelta(milliseconds=ms)
    except (OverflowError, ValueError):  # out of datetime's range, NaN, infinity
        return None


class Reader:
    """Reads dotted paths out of a body, collecting problems instead of raising."""

    def __init__(self, body: object) -> None:
        self.body = body
        self.problems: list[str] = []

    def problem(self, path: str, message: str) -> None:
        entry = f"{path}: {message}"
        if entry not in self.problems:  # the same path may be read for several fields
            self.problems.append(entry)

    def get(self, path: str) -> object:
        """The value at ``path``, or None when absent, null or blank."""
        if not isinstance(self.body, dict):
            return None
        node: object = self.body
        keys = path.split(".")
        for depth, key in enumerate(keys):
            if not isinstance(node, dict):
                # e.g. the corpus's "subscription": "192.168.4.57" (anonymiser quirk).
                self.problem(".".join(keys[:depth]), f"expected an object, got {kind(node)}")
                return None
            node = node.get(key)
            if node is None:
                return None
        if isinstance(node, str) and not node.strip():
            return None
        return node

    def text(self, path: str) -> str | None:
        value = self.get(path)
        if isinstance(value, str):
            return value.strip()
        if value is not None:
            self.problem(path, f"expected a string, got {kind(value)}")
        return None

    def code(self, path: str) -> str | None:
        """An identifier: a string, or an integer turned into one (§3: product id varies)."""
        value = self.get(path)
        if isinstance(value, float) and value.is_integer() and abs(value) < 10**MAX_CODE_LENGTH:
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value) if abs(value) < 10**MAX_CODE_LENGTH else "9" * (MAX_CODE_LENGTH + 1)
        else:
            value = self.text(path)
        if value is not None and len(value) > MAX_CODE_LENGTH:
            self.problem(path, f"longer than {MAX_CODE_LENGTH} characters")
            return None
        return value

    def email(self, path: str) -> str | None:
        value = self.text(path)
        if value is None or (len(value) <= MAX_EMAIL_LENGTH and _EMAIL.fullmatch(value)):
            return value.lower() if value is not None else None  # §3: lower-case and trim
        self.problem(path, "not an e-mail address")
        return None

    def name(self, path: str) -> str | None:
        """A person's name, cut to :data:`MAX_NAME_LENGTH` (still their name, for display)."""
        value = self.text(path)
        if value is not None and len(value) > MAX_NAME_LENGTH:
            self.problem(path, f"longer than {MAX_NAME_LENGTH} characters, cut")
            return value[:MAX_NAME_LENGTH].rstrip()
        return value

    def integer(self, path: str) -> int | None:
        """A non-negative integer up to :data:`MAX_INTEGER` (a number, or digits in a string).

        Bounded before converting: ``int()`` of 5,000 digits raises, and a huge count means nothing.
        """
        value = self.get(path)
        if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
            digits = value.strip().lstrip("0") or "0"
            value = int(digits) if len(digits) <= len(str(MAX_INTEGER)) else MAX_INTEGER + 1
        elif isinstance(value, float) and value.is_integer():
            value = int(value) if abs(value) <= MAX_INTEGER else MAX_INTEGER + 1
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            if 0 <= value <= MAX_INTEGER:
                return value
            self.problem(path, f"out of range (0 to {MAX_INTEGER})")
            return None
        self.problem(path, f"expected an integer, got {kind(value)}")
        return None

    def when(self, path: str) -> datetime | None:
        """Epoch milliseconds (number or numeric string) or an ISO 8601 string, as UTC (§3)."""
        value = self.get(path)
        if value is None:
            return None
        result = None
        if isinstance(value, bool):
            pass
        elif isinstance(value, int | float):
            result = _from_ms(value)
        elif isinstance(value, str) and _NUMERIC.fullmatch(value.strip()):
            result = _from_ms(float(value))
        elif isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value.strip())
                # A naive ISO string is taken as UTC.
                result = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
            except (ValueError, OverflowError):  # "0001-01-01T00:00+01:00" overflows
                result = None
        if result is None:
            detail = repr(value[:40]) if isinstance(value, str) else kind(value)
            self.problem(path, f"not a date (epoch ms or ISO 8601): {detail}")
        return result

    def area_code(self, path: str) -> str | None:
        value = self.code(path)
        if value is not None and not PHONE_CHARS.fullmatch(value):
            self.problem(path, "not a plausible area code")
            return None
        return value

    def country(self, path: str) -> str | None:
        value = self.text(path)
        if value is not None and not _COUNTRY_ISO.fullmatch(value):
            self.problem(path, "not an ISO country code")
            return None
        return value.upper() if value is not None else None
