"""``engine check``: what the command says besides the rules' errors (engine.rules.check_rules).

Files in the rules folder that are not rules (a note each), transitions and ignore entries no
rule test exercises (warnings, an exit 1 with ``--strict``), and the one line a valid rule set
answers with.
"""

from __future__ import annotations

from pathlib import Path

from engine.authoring.rule_tests import coverage_warnings
from engine.rules.files import ignored_entries
from engine.rules.model import Rules


def ignored_notes(rules_dir: Path) -> list[str]:
    """One note per entry of the rules folder that is not read as rules."""
    name = rules_dir.name
    return [
        f"{name}/{entry} ignored: only {name}/*.yaml and {name}/products/*.yaml are rules"
        for entry in ignored_entries(rules_dir)
    ]


def check_warnings(rules: Rules, rules_dir: Path) -> list[str]:
    """What valid rules still lack: rule tests for some transitions or ignore entries."""
    return coverage_warnings(rules, rules_dir)


def summary(rules: Rules, warnings: list[str]) -> str:
    """The line valid rules answer with: what they hold, and how many warnings."""
    return (
        f"ok: {len(rules.files)} files, {len(rules.products)} products, "
        f"{len(rules.states)} states, {len(rules.transitions)} transitions"
        + (f", {len(warnings)} warning(s)" if warnings else "")
    )
