"""Rules errors in a course operator's words.

Every message names the key or value at fault the way it is written in the file, says what
is expected with an example, and suggests the closest valid name when one is near. Never a
regular expression, a 0-based path or a validator's jargon: the people who read these edit
YAML, not Python. The loader decides *where* (the line); this module decides *what to say*
about names and the semantic checks; :mod:`engine.rules.schema_messages` explains schema errors.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

DASH = " — "

# --- names: "did you mean" ----------------------------------------------------------------


def _candidates(name: Any, choices: Iterable[str]) -> list[tuple[float, str]]:
    by_lower: dict[str, str] = {}
    for choice in choices:
        by_lower.setdefault(str(choice).lower(), str(choice))
    wanted = str(name).lower()
    scored = []
    for lower, choice in by_lower.items():
        ratio = difflib.SequenceMatcher(None, wanted, lower).ratio()
        if ratio >= 0.6:
            scored.append((ratio, choice))
    return sorted(scored, key=lambda item: (-item[0], item[1]))


def closest(name: Any, choices: Iterable[str]) -> str | None:
    """The valid name nearest to ``name`` (case-insensitive edit distance), or None."""
    found = _candidates(name, choices)
    return found[0][1] if found else None


def did_you_mean(name: Any, choices: Iterable[str], quote: str = "'{}'") -> str:
    """`` — did you mean 'x'?`` (or 'x' or 'y' when two are as near), or an empty string."""
    found = _candidates(name, choices)
    if not found or found[0][1] == name:
        return ""
    near = [choice for ratio, choice in found[:2] if found[0][0] - ratio < 0.05]
    return f"{DASH}did you mean {' or '.join(quote.format(choice) for choice in near)}?"


def unknown(what: str, name: Any, choices: Iterable[str], *, where: str = "", known_as: str = "") -> str:
    """``unknown state 'activ' in to — did you mean 'active'?`` or, with no near name, the list."""
    choices = list(choices)
    hint = did_you_mean(name, choices)
    if not hint and choices:
        hint = f" ({known_as or what + 's'}: {', '.join(choices)})"
    return f"unknown {what} {name!r}{where}{hint}"


def not_in_catalog(what: str, name: str, section: str, choices: Iterable[str]) -> str:
    """A tag, field or class a step or product names that catalog.yaml does not list."""
    choices = sorted(choices)
    hint = did_you_mean(name, choices)
    if not hint:
        hint = f": add it there (catalog.yaml){' or use one of: ' + ', '.join(choices) if choices else ''}"
    return f"{what} {name!r} is not in catalog.{section}{hint}"


# --- semantic messages ----------------------------------------------------------------------


def unknown_event(name: str, choices: Iterable[str]) -> str:
    hint = did_you_mean(name, choices)
    return f"unknown event {name!r}{hint or ': neither a Hotmart event nor declared under lifecycle.events'}"


def undeclared_timer(action: str, name: str, choices: Iterable[str]) -> str:
    hint = did_you_mean(name, choices)
    return f"{action}: event {name!r} is not declared under lifecycle.events{hint}"


def unknown_action(name: Any, actions: Iterable[str]) -> str:
    return unknown("action", name, sorted(actions), known_as="known")


def unknown_template_variable(name: str, variables: Iterable[str]) -> str:
    hint = did_you_mean(name, variables, quote="{{{}}}")
    if hint:
        return f"unknown template variable {{{name}}}{hint}"
    return (
        f"unknown template variable {{{name}}} (known: token, product.key, product.name, "
        "student.email, student.name, event.<field>)"
    )


def flow_for_product(flow: str, transitions: Iterable[str]) -> str:
    transitions = list(transitions)
    used_by = f"transition{'s' if len(transitions) > 1 else ''} {', '.join(transitions)}"
    return f"flows: add {flow!r} (used by {used_by}) or mark it optional"


def flow_misspelled_in_product(declared: str, flow: str) -> str:
    return f"flow {declared!r} is not used by any transition{DASH}did you mean {flow!r}?"


def flow_misspelled_in_step(flow: str, match: str) -> str:
    return f"no product declares flow {flow!r}{DASH}did you mean {match!r}?"


def duration(label: str, value: Any) -> str:
    return f"{label} {value!r}: write a number and a unit, e.g. 24h, 7d, 30m"


# --- YAML syntax ----------------------------------------------------------------------------


def yaml_syntax(problem: str) -> str:
    text = problem.strip()
    if "tab" in text:
        hint = "indent with spaces, never tabs"
    elif "',' or ']'" in text or "',' or '}'" in text:
        hint = "a [ or { opened on this line or above is not closed, or a value holds a comma (quote it)"
    elif "mapping values are not allowed" in text:
        hint = "check the indentation here and on the line above, or quote a value that contains ': '"
    else:
        hint = (
            "check the indentation here and on the line above: spaces only, no tabs; "
            "the keys of one block start in the same column"
        )
    return f"invalid YAML: {text}{DASH}{hint}"
