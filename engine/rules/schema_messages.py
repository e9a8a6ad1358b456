"""Schema errors in a course operator's words: one jsonschema error becomes what to fix.

config.schema.json validates every rules file first; its raw errors speak of regular
expressions, oneOf branches and 0-based paths. :func:`narrow` picks the sub-error that says
what to fix and :func:`schema_messages` words it (a key's name as written, the expected form
with an example, the closest valid name); the loader puts it at its line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.rules.messages import closest, did_you_mean, duration, unknown_action
from engine.sources import DEFAULT_SOURCE, SOURCES

FILE_KINDS = ("lifecycle", "product", "catalog", "onboarding")

# What a list's items are called, by the list's key.
_ITEM_NAMES = {
    "discord_roles": "Discord role",
    "roles": "Discord role",
    "hotmart_product_ids": "Hotmart product id",
    "manychat_tags": "tag",
    "tags": "tag",
    "classes": "class",
    "states": "state",
    "fields": "custom field",
    "offer_codes": "offer code",
    "cancel_timers": "cancel_timers event",
    "transitions": "transition",
    "do": "step",
    "ignore": "ignore entry",
}
# A product's sources: {hotmart: [...], kiwify: [...]}: each list holds that platform's product ids.
_ITEM_NAMES.update({name: f"{source.title} product id" for name, source in SOURCES.items()})
# catalog.unmanaged_products as a plain list holds the default source's ids.
_ITEM_NAMES["unmanaged_products"] = f"{DEFAULT_SOURCE.title} product id"

# Patterns of config.schema.json, explained. tests/engine/test_rules_messages.py checks that
# every pattern of the schema has an entry, so no admin ever reads a regular expression.
_PATTERN_HINTS = {
    "^[0-9]+[smhd]$": None,  # a duration: see duration()
    "^[A-Z][A-Z0-9_]*$": "event names are written in capitals and underscores, e.g. {upper}",
    "^[a-z][a-z0-9_]*$": "use lowercase letters, digits and _ , starting with a letter, e.g. {lower}",
    "^([a-z][a-z0-9_]*|\\*)$": "use a state name in lowercase letters, digits and _ , or *, e.g. {lower}",
    "^[a-z][a-z0-9_-]*$": "use lowercase letters, digits, _ and - , starting with a letter, e.g. {dashed}",
    "^[a-z0-9][a-z0-9_-]*$": "use lowercase letters, digits, _ and - , e.g. {dashed}",
    "^[0-9]{15,21}$": 'a Discord id is 15 to 21 digits, in quotes, e.g. "1180000000000000001" '
    "(Discord: right-click the role > Copy Role ID)",
    "^[0-9]+$": "a Hotmart product id is digits only, e.g. 1111111",
}
# Each other source's product id pattern, explained by the source.
for _source in SOURCES.values():
    _PATTERN_HINTS.setdefault(_source.product_id_schema["pattern"], _source.product_id_hint)

_REQUIRED_HINTS = {
    "on": " (the event, e.g. on: PURCHASE_APPROVED)",
    "from": " (the states it applies in, e.g. from: active, or from: '*')",
    "initial": " (the state of a new membership, e.g. initial: new)",
    "states": " (the list of states, e.g. states: [new, active])",
    "transitions": " (the list of transitions)",
    "key": " (the product's short name, e.g. key: curso)",
    "name": " (the name students see)",
    "hotmart_product_ids": " (e.g. hotmart_product_ids: [1111111])",
    "reason": " (why the event changes nothing)",
    "replies": " (the bot's replies)",
    "event": " (the internal event, e.g. event: GRACE_EXPIRED)",
    "flow": " (the logical flow name, e.g. flow: welcome)",
    "value": ' (e.g. value: "{token}")',
}

_TYPE_WORDS = {
    "string": "text",
    "array": "a list, e.g. [a, b]",
    "object": "keys with values (a mapping)",
    "number": "a number",
    "integer": "a whole number",
    "boolean": "true or false",
    "null": "nothing after the colon (the bare step)",
}


# A step that names a known action but lacks its parameters.
def _words_for_types(expected: Any) -> str:
    types = expected if isinstance(expected, list) else [expected]
    return " or ".join(_TYPE_WORDS.get(t, t) for t in types)


def _describe(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return repr(value)


def _step_index(path: list[Any]) -> int | None:
    """Where ``do, <index>`` sits in ``path`` (the last occurrence), or None."""
    for i in range(len(path) - 2, -1, -1):
        if path[i] == "do" and isinstance(path[i + 1], int):
            return i
    return None


def label(path: list[Any]) -> str:
    """The words an admin would use for the element at ``path``: `schedule after`, `Discord role`."""
    if not path:
        return "this file"
    last = path[-1]
    if isinstance(last, int):
        parent = next((p for p in reversed(path[:-1]) if isinstance(p, str)), "")
        return _ITEM_NAMES.get(parent, parent)
    at = _step_index(path)
    if at is not None and len(path) > at + 2:
        return " ".join(str(p) for p in path[at + 2 :] if isinstance(p, str))
    return str(last)


@dataclass(frozen=True)
class SchemaMessage:
    """One message for one schema error; ``path`` locates its line.

    ``covers`` is set on an unknown key that misspells a missing required key, and ``missing``
    on the "missing key" message: both are ``(*mapping path, key)``, so the loader reports
    a `form:` typo once, at the typo, rather than also as a missing `from`.
    """

    path: list[Any]
    text: str
    covers: tuple[Any, ...] | None = None
    missing: tuple[Any, ...] | None = None


CONDITION_KEYS = ("all", "any", "not", "field")


def narrow(error: Any) -> Any:
    """The sub-error of a oneOf/anyOf error that says what to fix.

    best_match([error]) descends to the deepest sub-error (a step's wrong parameter); a
    condition written as a mapping is matched to the branch its keys name (`field:`, `all:` ...),
    not to the "write text" branch.
    """
    from jsonschema.exceptions import best_match

    while error.context:
        if error.validator == "oneOf" and isinstance(error.instance, dict) and _is_condition(error.schema):
            branch = _condition_branch(error)
            if branch is None:
                return error  # no branch fits its keys: schema_messages names the odd key
            error = branch
            continue
        deeper = best_match([error])
        error = deeper if deeper is not error else best_match(error.context)
    return error


def _condition_branch(error: Any) -> Any:
    wanted = {
        index
        for index, branch in enumerate(error.validator_value)
        if isinstance(branch, dict) and set(branch.get("required", [])) & set(error.instance)
    }
    errors = [sub for sub in error.context if sub.relative_schema_path and sub.relative_schema_path[0] in wanted]
    return min(errors, key=lambda sub: len(sub.relative_schema_path), default=None)


def schema_messages(error: Any, actions: Mapping[str, str]) -> list[SchemaMessage]:
    """Turn one (already narrowed) jsonschema error into messages."""
    path = list(error.absolute_path)
    value = error.instance
    validator = error.validator
    schema = error.schema if isinstance(error.schema, dict) else {}
    what = label(path)

    # A condition mapping naming none of all/any/not/field: a misspelt key.
    if validator == "oneOf" and isinstance(value, dict) and _is_condition(schema):
        allowed = [*CONDITION_KEYS, *COMPARISON_KEYS]
        return [
            SchemaMessage(
                [*path, key], f"unknown key {key!r}{did_you_mean(key, allowed) or ' (write all, any, not or field)'}"
            )
            for key in value
            if key not in allowed
        ] or [SchemaMessage(path, f"{what}: write a condition, e.g. {{field: recurrence_number, gt: 1}}")]

    # A step: a name that is not an action, or an action missing its parameters.
    if len(path) >= 2 and path[-2] == "do" and isinstance(path[-1], int):
        step_message = _step_message(value, actions)
        if step_message:
            return [SchemaMessage(path, step_message)]

    if validator == "additionalProperties" and isinstance(value, dict):
        allowed = list(schema.get("properties", {}))
        items: list[SchemaMessage] = []
        for key in value:
            if key in allowed:
                continue
            if not path:
                text = f"unknown top-level key {key!r}{did_you_mean(key, FILE_KINDS)}"
                text += "" if did_you_mean(key, FILE_KINDS) else f": a rules file holds one of: {', '.join(FILE_KINDS)}"
                items.append(SchemaMessage([key], text))
                continue
            match = closest(key, allowed)
            required = schema.get("required", [])
            covers = (*path, match) if match is not None and match in required and match not in value else None
            hint = did_you_mean(key, allowed) if match is not None else f" (keys here: {', '.join(allowed)})"
            items.append(SchemaMessage([*path, key], f"unknown key {key!r}{hint}", covers))
        return items
    if validator == "required" and isinstance(value, dict):
        owner = _owner(error, path)
        return [
            SchemaMessage(path, f"{owner}: missing key {key!r}{_REQUIRED_HINTS.get(key, '')}", missing=(*path, key))
            for key in error.validator_value
            if key not in value
        ]
    if "propertyNames" in error.relative_schema_path or "propertyNames" in error.schema_path:
        # The key itself is wrong; point at it.
        return [SchemaMessage([*path, value], _pattern_message(str(value), value, schema.get("pattern", "")))]
    if validator == "pattern":
        return [SchemaMessage(path, _pattern_message(what, value, error.validator_value))]
    if validator == "type":
        return [SchemaMessage(path, _type_message(what, value, error.validator_value, path))]
    if validator == "enum":
        options = [str(o) for o in error.validator_value]
        return [
            SchemaMessage(
                path, f"{what} {_describe(value)}: write one of {', '.join(options)}{did_you_mean(value, options)}"
            )
        ]
    if validator in ("minItems",):
        return [SchemaMessage(path, f"{what}: list at least {error.validator_value} item(s)")]
    if validator == "uniqueItems":
        seen: set[Any] = set()
        dup = next((v for v in value if v in seen or seen.add(v)), None)
        return [SchemaMessage(path, f"{what}: {dup!r} is listed twice")]
    if validator == "minLength":
        return [SchemaMessage(path, f"{what} is empty: write some text")]
    if validator == "minimum":
        return [SchemaMessage(path, f"{what} {_describe(value)}: write {error.validator_value} or more")]
    if validator in ("minProperties", "maxProperties"):
        return [SchemaMessage(path, _size_message(path, what, schema))]
    return [SchemaMessage(path, f"{what}: {_describe(value)} is not valid here")]


def _owner(error: Any, path: list[Any]) -> str:
    # error.instance is the mapping itself; its name (a transition's) is inside it.
    if len(path) >= 2 and path[-2] == "transitions" and isinstance(error.instance, dict):
        name = error.instance.get("name")
        return f"transition {name!r}" if name else "this transition"
    return label(path)


COMPARISON_KEYS = ("equals", "not_equals", "in", "not_in", "gt", "gte", "lt", "lte", "exists")


def _is_condition(schema: dict) -> bool:
    branches = schema.get("oneOf", [])
    return any(isinstance(b, dict) and b.get("required") == ["field"] for b in branches)


def _step_message(step: Any, actions: Mapping[str, str]) -> str | None:
    """``actions``: every action's name and an example of it with its parameters."""
    if isinstance(step, str):
        if step not in actions:
            return unknown_action(step, actions)
        return f"{step} needs parameters, e.g. {actions[step]}"
    if isinstance(step, dict):
        unknown_names = [name for name in step if name not in actions]
        if unknown_names:
            return unknown_action(unknown_names[0], actions)
        if len(step) > 1:
            return f"one action per step: write each of {', '.join(step)} on its own line starting with '- '"
        if not step:
            return "an empty step: write an action, e.g. add_role"
        return None
    return f"a step is an action name or one action with its parameters, not {_describe(step)}"


def _size_message(path: list[Any], what: str, schema: dict) -> str:
    if not path:
        return f"a rules file holds exactly one of: {', '.join(FILE_KINDS)}"
    if what == "schedule":
        return "schedule: give the event and either after or at, e.g. {event: GRACE_EXPIRED, after: 7d}"
    if "field" in schema.get("properties", {}):
        return "a comparison names a field and one test, e.g. {field: recurrence_number, gt: 1}"
    if "minProperties" in schema:
        return f"{what}: write at least {schema['minProperties']} key(s), or leave it bare"
    return f"{what}: write at most {schema['maxProperties']} key(s)"


def _pattern_message(what: str, value: Any, pattern: str) -> str:
    if pattern == "^[0-9]+[smhd]$":
        return duration(what, value)
    text = str(value)
    sample = "_".join(text.replace("-", " ").split()) or "name"
    hint = _PATTERN_HINTS.get(pattern)
    if hint is None:  # every schema pattern has a hint (tested); a rules change could add one
        hint = "not in the expected form (see config.schema.json)"
    filled = hint.format(upper=sample.upper(), lower=sample.lower(), dashed=text.lower().replace(" ", "-"))
    if what == text:
        return f"{text!r}: {filled}"
    return f"{what} {text!r}: {filled}"


def _type_message(what: str, value: Any, expected: Any, path: list[Any]) -> str:
    types = expected if isinstance(expected, list) else [expected]
    if value is None and len(path) == 3 and path[:2] == ["product", "flows"]:
        return f"flow {what} has no value: paste its ManyChat flow namespace, or write none (no such flow)"
    if value is None:
        return f"{what} has no value: write {_words_for_types(types)}"
    if "string" in types and isinstance(value, int | float) and not isinstance(value, bool):
        if what == "Discord role" or len(str(value)) >= 15:
            return (
                f'{what} {value}: put the id in quotes, "{value}" (YAML turns a long unquoted number into an integer)'
            )
        return f'{what} {value}: put it in quotes, "{value}"'
    if types == ["number"] and isinstance(value, str):
        return f"{what} {value!r}: write a number without quotes, e.g. {what}: 1"
    if types == ["array"] and what in ("do", "from", "on", "hotmart_product_ids", "states"):
        example = {
            "do": "do: [add_role]",
            "from": "from: [active, overdue]",
            "on": "on: [PURCHASE_APPROVED]",
            "hotmart_product_ids": "hotmart_product_ids: [1111111]",
            "states": "states: [new, active]",
        }[what]
        return f"{what} {_describe(value)}: write a list, e.g. {example}"
    return f"{what} {_describe(value)}: write {_words_for_types(types)}"
