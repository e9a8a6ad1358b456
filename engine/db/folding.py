"""Text folded for a search: lower-cased, Latin-1's accents removed ("JOÃO" and "joao" read "joao").

:func:`fold` does it in Python (what is typed); :func:`contains_folded` finds the folded text in a
column, whatever its accents and case. On PostgreSQL a regular expression whose vowels, ``c``,
``n`` and ``y`` are classes of their accented forms (``translate()`` on every name costs several
times more); SQLite (``make run``) has neither, so each of its connections gets :func:`sqlite_fold`
as the function ``engine_fold`` (engine.db.session)."""

from __future__ import annotations

import unicodedata

from sqlalchemy import ColumnElement, func

SQLITE_FUNCTION = "engine_fold"


def _accent_table() -> tuple[str, str]:
    """Latin-1's accented letters (both cases) and their plain lower-case letter: "Ã" -> "a"."""
    accented, plain = [], []
    for code in range(0xC0, 0x100):
        letter = chr(code)
        base = "".join(c for c in unicodedata.normalize("NFKD", letter) if not unicodedata.combining(c))
        if base != letter and len(base) == 1 and base.isascii():
            accented.append(letter)
            plain.append(base.lower())
    return "".join(accented), "".join(plain)


ACCENTED, PLAIN = _accent_table()
_TABLE = str.maketrans(ACCENTED, PLAIN)
# A plain letter -> every form it folds from, both cases: "c" -> "cCçÇ".
_FORMS: dict[str, str] = {}
for _accented, _plain in zip(ACCENTED, PLAIN, strict=True):
    _FORMS[_plain] = _FORMS.get(_plain, _plain + _plain.upper()) + _accented


def fold(text: str) -> str:
    """Lower-cased, Latin-1 accents removed."""
    return text.lower().translate(_TABLE)


def sqlite_fold(value: str | None) -> str | None:
    """:func:`fold` as SQLite's ``engine_fold`` (NULL stays NULL)."""
    return None if value is None else fold(value)


def accent_pattern(text: str) -> str:
    """A PostgreSQL regular expression (case-insensitive, ``~*``) finding ``text`` in any accents:
    "João" -> ``j[oOòó...][aAàá...][oOòó...]``; every other character literal."""
    parts = []
    for char in fold(text):
        if char in _FORMS:
            parts.append(f"[{_FORMS[char]}]")
        elif char.isalnum():
            parts.append(char)
        else:
            parts.append("\\" + char)  # a backslash before a non-alphanumeric makes it literal
    return "".join(parts)


def contains_folded(column: ColumnElement[str], text: str, dialect: str) -> ColumnElement[bool]:
    """``column`` holds ``text``, any case, accents or not."""
    if dialect == "postgresql":
        return column.regexp_match(accent_pattern(text), flags="i")
    return getattr(func, SQLITE_FUNCTION)(column).contains(fold(text), autoescape=True)
