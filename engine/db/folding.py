"""Text folded for a search: lower-cased, Latin-1's accents removed ("JOÃO" and "joao" read "joao").

The same fold in Python (:func:`fold`, for what is typed) and in SQL (:class:`folded`, for a column):
PostgreSQL's ``translate``; SQLite (``make run``) has no ``translate`` and lowers ASCII only, so each
of its connections gets :func:`sqlite_fold` as the function ``engine_fold`` (engine.db.session)."""

from __future__ import annotations

import unicodedata
from typing import Any

from sqlalchemy import String
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

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


def fold(text: str) -> str:
    """Lower-cased, Latin-1 accents removed: what :class:`folded` makes of a column."""
    return text.lower().translate(_TABLE)


def sqlite_fold(value: str | None) -> str | None:
    """:func:`fold` as SQLite's ``engine_fold`` (NULL stays NULL)."""
    return None if value is None else fold(value)


class folded(FunctionElement[str]):  # lower case, as SQL functions are: folded(Student.name)
    """A column as :func:`fold` makes it."""

    type = String()
    name = "folded"
    inherit_cache = True


@compiles(folded, "postgresql")
def _folded_postgresql(element: folded, compiler: Any, **kw: Any) -> str:
    # Accented capitals are in the table too: lower() leaves them under the C locale.
    return f"translate(lower({compiler.process(element.clauses, **kw)}), '{ACCENTED}', '{PLAIN}')"


@compiles(folded)
def _folded_elsewhere(element: folded, compiler: Any, **kw: Any) -> str:
    return f"{SQLITE_FUNCTION}({compiler.process(element.clauses, **kw)})"
