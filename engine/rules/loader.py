"""Load ``rules/*.yaml``: read the files, validate each against the schema, sort them by kind,
then build and check :class:`Rules` (:mod:`engine.rules.builder`).

Every problem is reported as ``file:line: message``; loading never stops at the
first one, so an admin sees every mistake of a change in one ``engine check``.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from functools import lru_cache
from pathlib import Path
from typing import Any

from engine.rules.actions import EXAMPLES
from engine.rules.builder import RulesBuilder
from engine.rules.files import RULE_TESTS_DIR, rule_files  # noqa: F401 - RULE_TESTS_DIR re-exported
from engine.rules.model import Rules
from engine.rules.schema_messages import SchemaMessage, narrow, schema_messages
from engine.rules.source import Problem, line_of, load_yaml

# engine/config.schema.json links to the top-level file, so an installed package carries it too.
SCHEMA_PATH = Path(__file__).resolve().parents[1] / "config.schema.json"
FILE_KINDS = ("lifecycle", "product", "catalog", "onboarding")
_KIND_LINE = re.compile(rf"^({'|'.join(FILE_KINDS)})\s*:", re.MULTILINE)


class RulesError(Exception):
    """The rules are invalid; ``problems`` lists every error found."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@lru_cache(maxsize=1)
def _validator():
    from jsonschema import Draft202012Validator

    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return Draft202012Validator(schema)


def load_rules(rules_dir: Path | str) -> Rules:
    """Load and check a rules directory; raises :class:`RulesError` listing every problem."""
    rules, problems = check_rules(rules_dir)
    if problems or rules is None:
        raise RulesError(problems)
    return rules


def check_rules(rules_dir: Path | str) -> tuple[Rules | None, list[Problem]]:
    rules_dir = Path(rules_dir)
    display_root = rules_dir.name or str(rules_dir)
    if not rules_dir.is_dir():
        return None, [Problem(str(rules_dir), 1, "rules directory not found")]
    paths = rule_files(rules_dir)  # the rule tests (rules/tests/) and other folders are not rules
    documents: dict[str, list[tuple[str, Any]]] = defaultdict(list)
    problems: list[Problem] = []
    # Kinds of the files that failed to parse or validate: they exist, so no "no <kind> file".
    broken: set[str] = set()
    for path in paths:
        display = f"{display_root}/{path.relative_to(rules_dir).as_posix()}"
        data, found = load_yaml(path, display)
        problems += found
        if data is None and not found:
            problems.append(Problem(display, 1, "empty file"))
            continue
        if data is None:
            broken.update(_KIND_LINE.findall(path.read_text(encoding="utf-8", errors="replace")))
            continue
        schema_problems = _schema_problems(data, display)
        problems += schema_problems
        if not schema_problems:
            kind = next(iter(data))
            documents[kind].append((display, data))
        elif isinstance(data, dict):
            broken.update(k for k in data if k in FILE_KINDS)
    builder = RulesBuilder(display_root, documents, broken)
    rules = builder.build()
    problems += builder.problems
    # A step shared through a YAML anchor is checked once per transition: report it once.
    problems = sorted(set(problems), key=lambda p: (p.file, p.line, p.message))
    return (None if problems else rules), problems


# --- schema ------------------------------------------------------------------------------


def _schema_problems(data: Any, display: str) -> list[Problem]:
    found: list[SchemaMessage] = []
    for error in _validator().iter_errors(data):
        found += schema_messages(narrow(error), EXAMPLES)
    # A misspelt key (`form:`) is one mistake: say "unknown key", not also "missing 'from'".
    covered = {m.covers for m in found if m.covers is not None}
    problems = [Problem(display, line_of(data, m.path), m.text) for m in found if m.missing not in covered]
    # One mistake can break several branches: keep one message per line.
    return list(dict.fromkeys(problems))
