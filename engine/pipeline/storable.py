"""Make a decoded webhook body storable in PostgreSQL's ``jsonb`` without losing it.

Python's JSON decoder accepts what ``jsonb`` refuses: ``NaN``/``Infinity`` and numbers out of a
double's range (``1e400``), ``\\u0000`` in any string, lone UTF-16 surrogates (escaped, or raw
bytes ``ED A0 80``), and integers longer than Python's own digit limit. A body that is stored is
acknowledged, so such a body is stored anyway: the raw bytes verbatim (``events.raw_bytes``),
the payload sanitised, and a note of each change (``events.payload_changes``).

Sanitising: NUL and lone surrogates become the visible text ``\\u0000`` / ``\\ud800``; non-finite
and out-of-range numbers, and over-long integers, are kept as strings of their literal text.
The fast path (a body that needs nothing) costs one serialisation and one regex search.
"""

from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import dataclass, field
from typing import Any

__all__ = ["NotJSON", "Storable", "decode", "storable"]

# What jsonb refuses in a string (checked on the serialised text): NUL is written \u0000 by
# json.dumps; a lone surrogate stays a raw code point with ensure_ascii=False (a valid pair was
# joined into one code point by the decoder).
_REFUSED_TEXT = re.compile("\\\\u0000|[\ud800-\udfff]")
_REFUSED_CHAR = re.compile("[\x00\ud800-\udfff]")
_MAX_INT_DIGITS = sys.get_int_max_str_digits() or 4300
# decode() kept an integer this long as a string: the fast path must not take such a body.
_LONG_INTEGER = re.compile(rb"[0-9]{%d}" % (_MAX_INT_DIGITS + 1))
_MAX_NOTES = 20
# A Hotmart body nests about 5 deep; anything past this is refused before it reaches code that
# recurses (sanitising, the admin API's redaction, the worker).
MAX_DEPTH = 64


class NotJSON(ValueError):
    """The body cannot be decoded as JSON at all; ``reason`` is what the sender is told."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class Storable:
    value: Any
    changes: list[str] = field(default_factory=list)  # empty: stored exactly as decoded


def decode(raw: bytes) -> Any:
    """Decode a body as JSON (any value). Integers beyond Python's digit limit are kept as strings.

    Raises :class:`NotJSON` with the reason to answer.
    """
    try:
        value = json.loads(raw)
    except RecursionError:  # a hostile body nested thousands deep; the parser must not fall over
        raise NotJSON("body nests too deep") from None
    except (ValueError, UnicodeDecodeError):
        try:  # the slow path only for bodies the fast one refused: a huge integer is still JSON
            value = json.loads(raw, parse_int=_int_or_text)
        except RecursionError:
            raise NotJSON("body nests too deep") from None
        except (ValueError, UnicodeDecodeError):
            raise NotJSON("body is not JSON") from None
    # Counting brackets is C-speed; only a body with that many walks its depth.
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and _depth(value) > MAX_DEPTH:
        raise NotJSON("body nests too deep")
    return value


def storable(raw: bytes, decoded: Any) -> Storable:
    """``decoded`` if jsonb can hold it, else a sanitised copy (re-decoded from ``raw``) and notes."""
    try:
        text = json.dumps(decoded, allow_nan=False, ensure_ascii=False)
    except ValueError:
        text = None  # NaN or an infinity somewhere
    except RecursionError:  # decoded within the limit, too deep to encode again: take the slow path
        text = None
    long_integer = len(raw) > _MAX_INT_DIGITS and _LONG_INTEGER.search(raw)
    if text is not None and not long_integer and not _REFUSED_TEXT.search(text):
        return Storable(decoded)
    notes: list[str] = []
    value = json.loads(
        raw,
        parse_constant=lambda name: _note(notes, f"non-finite number {name} kept as a string", name),
        parse_float=lambda literal: _float_or_text(literal, notes),
        parse_int=lambda literal: _int_or_text(literal, notes),
    )
    value = _clean(value, "", notes)
    if len(notes) > _MAX_NOTES:
        notes[_MAX_NOTES:] = [f"... and {len(notes) - _MAX_NOTES} more"]
    return Storable(value, notes)


def escape_text(value: str) -> str:
    """NUL and lone surrogates as visible ``\\uXXXX`` text (PostgreSQL text cannot hold them)."""
    return _REFUSED_CHAR.sub(lambda m: f"\\u{ord(m.group()):04x}", value)


# --- private helpers -------------------------------------------------------------------


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, depth)
            if depth > MAX_DEPTH:
                return depth
            stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


def _note(notes: list[str], message: str, value: Any) -> Any:
    notes.append(message)
    return value


def _float_or_text(literal: str, notes: list[str]) -> float | str:
    value = float(literal)
    if math.isfinite(value):
        return value
    return _note(notes, f"number {literal[:40]} out of range, kept as a string", literal)


def _int_or_text(literal: str, notes: list[str] | None = None) -> int | str:
    if len(literal.lstrip("-")) <= _MAX_INT_DIGITS:
        return int(literal)
    if notes is not None:
        notes.append(f"integer of {len(literal)} digits kept as a string")
    return literal


def _clean(value: Any, path: str, notes: list[str]) -> Any:
    """Escape refused characters in strings and keys; ``path`` names where, for the notes."""
    if isinstance(value, str):
        if _REFUSED_CHAR.search(value):
            notes.append(f"{path or '(body)'}: NUL or lone surrogate escaped as \\uXXXX text")
            return escape_text(value)
        return value
    if isinstance(value, dict):
        cleaned = {}
        for key, item in value.items():
            safe_key = escape_text(key)
            if safe_key != key:
                notes.append(f"{path or '(body)'}: key with NUL or lone surrogate escaped")
            cleaned[safe_key] = _clean(item, f"{path}.{safe_key}" if path else safe_key, notes)
        return cleaned
    if isinstance(value, list):
        return [_clean(item, f"{path}[{index}]", notes) for index, item in enumerate(value)]
    return value
