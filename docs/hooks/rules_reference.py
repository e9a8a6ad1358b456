"""The rules language's reference, written from the code so that it cannot drift.

Two pages are generated when the site is built: every action a step may name, from the registry
(``engine/rules/actions.py``: its declaration and the schema of its argument), and every key of
every rules file, from ``engine/config.schema.json`` (the schema ``engine check`` validates with).
A declaration field added to ``Action`` appears in the actions table without a change here.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import engine
from engine.rules.actions import ACTIONS, Action, LedgerUse

SCHEMA_PATH = Path(engine.__file__).resolve().parent / "config.schema.json"

# The files of rules/, in the order a reader meets them, and the shared shapes they reference.
FILE_KINDS = ("lifecycle", "product", "catalog", "onboarding")
SHAPES_WITH_A_SECTION = ("transition", "condition", "step")

# Declaration fields that are code, not facts a reader can use (how a step is checked and rendered).
_CODE_FIELDS = {"render", "check"}
# Declaration fields with a column of their own in the summary table.
_SUMMARY_FIELDS = ("executor", "bare", "product_resource", "idempotent", "ledger", "example")


def load_schema(path: Path = SCHEMA_PATH) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


# --- JSON Schema, as a reader says it -------------------------------------------------------


def _code(text: Any) -> str:
    return f"`{text}`"


def _anchor_of(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def describe(schema: dict[str, Any], link: Callable[[str], str]) -> str:
    """One line for a JSON Schema: ``list of string``, ``one of `a`, `b```, a link to a shared shape..."""
    if "$ref" in schema:
        return link(_anchor_of(schema["$ref"]))
    for combinator in ("oneOf", "anyOf"):
        if combinator in schema:
            return " or ".join(describe(option, link) for option in schema[combinator])
    if "enum" in schema:
        return "one of " + ", ".join(
            _code(value if isinstance(value, str) else json.dumps(value)) for value in schema["enum"]
        )
    kind = schema.get("type")
    if isinstance(kind, list):
        text = " or ".join(_one_type(schema, name, link) for name in kind)
    elif kind == "array":
        text = "list of " + describe(schema.get("items", {}), link)
    elif kind == "object" and "properties" not in schema and "additionalProperties" in schema:
        keys = schema.get("propertyNames", {})
        key = f"key matching {_code(keys['pattern'])}" if "pattern" in keys else "key"
        value = schema["additionalProperties"]
        text = f"mapping of {key} to " + (describe(value, link) if isinstance(value, dict) else "anything")
    elif kind is None:
        text = "anything"
    else:
        text = kind
    if "pattern" in schema and kind != "object":
        text += f" matching {_code(schema['pattern'])}"
    if "minimum" in schema:
        text += f" ≥ {schema['minimum']}"
    if schema.get("minItems"):
        text += f", at least {schema['minItems']} item{'s' if schema['minItems'] > 1 else ''}"
    if schema.get("uniqueItems"):
        text += ", no repeats"
    return text


def _one_type(schema: dict[str, Any], kind: str, link: Callable[[str], str]) -> str:
    """One of several types a key may have: a list says of what, a mapping with keys points below."""
    if kind == "array" and "items" in schema:
        return f"list of ({describe(schema['items'], link)})"
    if kind == "object" and "properties" in schema:
        return "mapping of the keys below"
    return kind


def _cell(text: str) -> str:
    """Text for a table cell: a pipe outside code escaped (inside a code span it splits nothing)."""
    parts = text.replace("\n", " ").split("`")
    return "`".join(part if index % 2 else part.replace("|", "\\|") for index, part in enumerate(parts))


def key_rows(schema: dict[str, Any], prefix: str, link: Callable[[str], str]) -> list[tuple[str, str, bool, str]]:
    """(key path, type, required, description) for every key under an object schema, nested
    objects and lists of objects followed (``transitions[]`` names each item of a list)."""
    rows = []
    required = set(schema.get("required", ()))
    for name, sub in schema.get("properties", {}).items():
        path = f"{prefix}.{name}" if prefix else name
        rows.append((path, describe(sub, link), name in required, sub.get("description", "")))
        if _has_type(sub, "object") and "properties" in sub:
            rows += key_rows(sub, path, link)
        items = sub.get("items", {})
        if sub.get("type") == "array" and items.get("type") == "object" and "properties" in items:
            rows += key_rows(items, f"{path}[]", link)
    return rows


def _has_type(schema: dict[str, Any], kind: str) -> bool:
    types = schema.get("type")
    return kind in types if isinstance(types, list) else types == kind


def _key_table(rows: list[tuple[str, str, bool, str]]) -> list[str]:
    lines = ["| key | type | required | description |", "|---|---|---|---|"]
    for path, kind, required, description in rows:
        lines.append(f"| `{path}` | {_cell(kind)} | {'yes' if required else ''} | {_cell(description)} |")
    return lines


def schema_markdown(schema: dict[str, Any] | None = None) -> str:
    """Every key of every rules file, from config.schema.json."""
    schema = schema or load_schema()
    defs = schema["$defs"]

    def link(name: str) -> str:
        if name in FILE_KINDS or name in SHAPES_WITH_A_SECTION:
            return f"[{name}](#{name})"
        return f"[{name}](#shared-shapes)"

    lines = [f"*{schema.get('description', '')}*", ""]
    for kind in FILE_KINDS:
        lines += [f"## `{kind}` {{#{kind}}}", ""]
        lines += _key_table(key_rows(defs[kind], kind, link)) + [""]
    lines += ["## A transition {#transition}", "", "An item of `lifecycle.transitions`.", ""]
    lines += _key_table(key_rows(defs["transition"], "", link)) + [""]
    lines += ["## A condition {#condition}", "", defs["condition"].get("description", ""), ""]
    for option in defs["condition"]["oneOf"]:
        lines.append(f"- {_condition_form(option, link)}")
    lines += ["", "## A step {#step}", "", defs["step"].get("description", ""), ""]
    bare, mapping = defs["step"]["oneOf"]
    lines.append("- a bare name: " + ", ".join(_code(name) for name in bare["enum"]))
    lines.append(
        "- a one-key mapping, `ACTION: ARGUMENT`, for any action: "
        + ", ".join(f"[`{name}`](actions.md#{name})" for name in mapping["properties"])
    )
    lines += ["", "## Shared shapes", "", "| name | shape | description |", "|---|---|---|"]
    for name, shape in defs.items():
        if name in FILE_KINDS or name in SHAPES_WITH_A_SECTION:
            continue
        lines.append(f"| `{name}` | {_cell(describe(shape, link))} | {_cell(shape.get('description', ''))} |")
    return "\n".join(lines) + "\n"


def _condition_form(option: dict[str, Any], link: Callable[[str], str]) -> str:
    if option.get("type") == "object":
        keys = list(option["properties"])
        if keys == ["field", *keys[1:]] and len(keys) > 2:
            return "a comparison, `{field: NAME, OP: VALUE}` with OP one of " + ", ".join(map(_code, keys[1:]))
        return f"`{{{keys[0]}: ...}}`: " + describe(option["properties"][keys[0]], link)
    return describe(option, link)


# --- the action registry --------------------------------------------------------------------


def declaration_fields(action: Action | type[Action] = Action) -> list[str]:
    """The facts an action declares, as the registry's dataclass lists them (code excluded)."""
    return [f.name for f in dataclasses.fields(action) if f.name not in _CODE_FIELDS | {"name", "schema"}]


def resolve(schema: Any, defs: dict[str, Any], seen: frozenset[str] = frozenset()) -> Any:
    """The schema with its ``$ref``s to shared shapes written out (a recursive shape stays a ``$ref``)."""
    if isinstance(schema, list):
        return [resolve(item, defs, seen) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        name = _anchor_of(schema["$ref"])
        if name in seen or name not in defs:
            return schema
        return resolve(defs[name], defs, seen | {name})
    return {key: resolve(value, defs, seen) for key, value in schema.items()}


def _value(value: Any) -> str:
    if value is None or value == "" or value == frozenset():
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, LedgerUse):
        return f"{'grants' if value.grants else 'removes'} `{value.kind}`"
    if dataclasses.is_dataclass(value):
        return ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(value).items())
    if isinstance(value, frozenset | set | tuple | list):
        return ", ".join(sorted(map(str, value)))
    return str(value)


def actions_markdown(actions: dict[str, Action] | None = None, defs: dict[str, Any] | None = None) -> str:
    """Every action of the registry: a summary table, then each action's declaration and argument
    (its schema with the shared shapes of config.schema.json's ``$defs`` written out)."""
    actions = ACTIONS if actions is None else actions
    defs = load_schema()["$defs"] if defs is None else defs
    header = ["action", "run by", "bare form", "takes from the product", "idempotent", "grant ledger"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, action in actions.items():
        cells = [
            f"[`{name}`](#{name})",
            action.executor,
            _value(action.bare),
            _code(action.product_resource) if action.product_resource else "—",
            _value(action.idempotent),
            _value(action.ledger),
        ]
        lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    lines.append("")
    for name, action in actions.items():
        lines += [f"## `{name}` {{#{name}}}", ""]
        if action.example:
            lines += ["```yaml", f"- {action.example}", "```", ""]
        description = action.schema.get("description")
        if description:
            lines += [description, ""]
        lines.append(f"- **run by**: {action.executor}")
        lines.append(f"- **bare form** (`- {name}`): " + ("allowed" if action.bare else "not allowed"))
        if action.product_resource:
            lines.append(f"- **bare, it takes** the product's `access.{action.product_resource}`")
        lines.append(
            "- **idempotent**: "
            + ("yes (a failed step is retried)" if action.idempotent else "no (never resent automatically)")
        )
        if action.ledger:
            verb = "records" if action.ledger.grants else "removes (only what the engine granted)"
            lines.append(
                f"- **grant ledger**: {verb} `{action.ledger.kind}` from the parameter `{action.ledger.param}`"
            )
        if action.secret_params:
            lines.append("- **never shown**: " + ", ".join(map(_code, sorted(action.secret_params))))
        for field_name in declaration_fields(action):
            if field_name not in _SUMMARY_FIELDS and field_name != "secret_params":
                lines.append(f"- **{field_name.replace('_', ' ')}**: {_value(getattr(action, field_name))}")
        argument = resolve(action.schema, defs)
        lines += ["", "Its argument (JSON Schema):", "", "```json", json.dumps(argument, indent=2), "```", ""]
    return "\n".join(lines)
