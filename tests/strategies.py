"""Hypothesis strategies of hostile JSON, shared by the webhook and parser property tests."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from tests.conftest import REFERENCE

REFERENCES = [json.loads(path.read_bytes()) for path in sorted(REFERENCE.glob("*.json"))]


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every field of a payload (objects and leaves alike), as key paths."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


FIELDS = [(index, path) for index, body in enumerate(REFERENCES) for path in _paths(body)]

# Text as hostile as JSON can carry: NUL, lone surrogates, control characters, long runs.
hostile_text = st.text(
    st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=()), max_size=80
) | st.sampled_from(["", " ", "\x00", "\ud800", "9" * 5000, "x" * 400, "Ana\x00Souza", "2026-13-45", "-1", "1e400"])
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**80), max_value=10**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | hostile_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(hostile_text, children, max_size=4),
    max_leaves=12,
)


def set_path(body: Any, path: tuple, value: Any) -> None:
    node = body
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
