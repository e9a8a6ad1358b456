"""What the list views share: bounded query and form parameters (a hostile value is the 422 page,
never a 500) and the pager under a table."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Form, Query
from fastapi.exceptions import RequestValidationError

from engine.service.schemas import MAX_ID, PRINTABLE

Offset = Annotated[int, Query(ge=0, le=MAX_ID)]
# A note ("why") on an action: any text a person types, newlines included, but no NUL (the history
# is JSON in PostgreSQL, which cannot hold one) and not a book.
NOTE_LENGTH = 1000
Note = Annotated[str, Form(max_length=NOTE_LENGTH, pattern=r"^[^\x00]*$")]


def text_query(max_length: int) -> Any:
    """A free-text filter: printable, bounded."""
    return Query(max_length=max_length, pattern=PRINTABLE)


def one_of(name: str, value: str | None, allowed: Iterable[str], *, where: str = "query") -> None:
    """A value that must be one of a set known only at run time (the rules' states, the sources):
    another is the same 422 as a bad enum."""
    if value and value not in set(allowed):
        raise RequestValidationError(
            [{"type": "enum", "loc": (where, name), "msg": "Input should be one of the listed values", "input": value}]
        )


def blank_to_none(value: str | None) -> str | None:
    """An empty filter field (a GET form sends ``email=``) filters nothing."""
    value = (value or "").strip()
    return value or None


@dataclass(frozen=True)
class Pager:
    """Where a page of ``limit`` rows from ``offset`` sits among ``total``."""

    total: int
    limit: int
    offset: int

    @property
    def first(self) -> int:
        return min(self.offset + 1, self.total)

    @property
    def last(self) -> int:
        return min(self.offset + self.limit, self.total)

    @property
    def previous(self) -> int | None:
        return max(0, self.offset - self.limit) if self.offset > 0 else None

    @property
    def next(self) -> int | None:
        return self.offset + self.limit if self.offset + self.limit < self.total else None
