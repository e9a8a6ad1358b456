"""Read YAML while remembering where every key and item came from.

Error messages must say ``rules/file.yaml:LINE: message``; PyYAML forgets lines once
it builds Python objects, so containers built here carry them along.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from engine.rules.messages import yaml_syntax

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class LineDict(dict):
    """A mapping that knows the line of itself and of each key."""

    line: int = 0
    key_lines: dict[Any, int]


class LineList(list):
    """A sequence that knows the line of itself and of each item."""

    line: int = 0
    item_lines: list[int]


@dataclass(frozen=True)
class Problem:
    """One rules error, located."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class _LineLoader(_Loader):  # type: ignore[misc, valid-type]
    duplicates: list[tuple[int, str]]

    def construct_mapping(self, node, deep=False):  # noqa: D401 - PyYAML hook
        self.flatten_mapping(node)
        mapping = LineDict()
        mapping.line = node.start_mark.line + 1
        mapping.key_lines = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in mapping:
                first = mapping.key_lines[key]
                message = f"duplicate key {key!r} (also at line {first}): keep one; YAML would use only this one"
                self.duplicates.append((key_node.start_mark.line + 1, message))
            mapping[key] = self.construct_object(value_node, deep=True)
            mapping.key_lines[key] = key_node.start_mark.line + 1
        return mapping

    def construct_sequence(self, node, deep=False):
        seq = LineList(self.construct_object(child, deep=True) for child in node.value)
        seq.line = node.start_mark.line + 1
        seq.item_lines = [child.start_mark.line + 1 for child in node.value]
        return seq


# YAML 1.1 reads on/off/yes/no as booleans; `on:` is a key of the rules language, so only
# true/false are booleans here (as in YAML 1.2).
_LineLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in _Loader.yaml_implicit_resolvers.items()
}
_LineLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_LineLoader.add_constructor("tag:yaml.org,2002:map", _LineLoader.construct_mapping)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _LineLoader.construct_sequence)


def load_yaml(path: Path, display: str) -> tuple[Any, list[Problem]]:
    """Parse one file; returns (data, problems). Syntax errors become problems."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [Problem(display, 1, f"cannot read file: {exc}")]
    loader = _LineLoader(text)
    loader.duplicates = []
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        return None, [Problem(display, line, yaml_syntax(str(exc.problem or exc)))]
    except yaml.YAMLError as exc:
        return None, [Problem(display, 1, yaml_syntax(str(exc)))]
    finally:
        loader.dispose()
    return data, [Problem(display, line, msg) for line, msg in loader.duplicates]


def line_of(data: Any, path: tuple[Any, ...] | list[Any]) -> int:
    """The line of the deepest known element along ``path`` inside ``data``."""
    line = getattr(data, "line", 1)
    node = data
    for part in path:
        if isinstance(node, LineDict) and part in node:
            line = node.key_lines.get(part, line)
            node = node[part]
        elif isinstance(node, LineList) and isinstance(part, int) and 0 <= part < len(node):
            line = node.item_lines[part]
            node = node[part]
        else:
            break
    return line
