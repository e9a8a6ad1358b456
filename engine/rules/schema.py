"""config.schema.json's generated parts: the actions (from the actions registry), a product's
``sources:`` and the catalogue's ``unmanaged_products`` (from the sources registry).
``python -m engine.rules.schema`` rewrites them (a test fails when the file and the registries
differ)."""

from __future__ import annotations

import json
from typing import Any

from engine.rules.actions import ACTIONS
from engine.rules.loader import SCHEMA_PATH
from engine.sources import DEFAULT_SOURCE, SOURCES

# Argument shapes several actions share, written to config.schema.json's $defs.
_NAMES = {
    "oneOf": [
        {"type": "null"},
        {"type": "string", "minLength": 1},
        {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
    ]
}
PARAM_DEFS: dict[str, dict[str, Any]] = {
    "role_params": {
        "oneOf": [
            {"type": "null"},
            {
                "type": "object",
                "additionalProperties": False,
                "minProperties": 1,
                "properties": {
                    "roles": {"type": "array", "items": {"$ref": "#/$defs/snowflake"}, "minItems": 1},
                    "account": {
                        "enum": ["current", "previous"],
                        "description": "previous: the Discord account the student linked before (relink)",
                    },
                },
            },
        ]
    },
    "tag_params": _NAMES,
    "class_params": _NAMES,
}

STEP_DESCRIPTION = "An action: a bare name uses the product's own resources; a one-key mapping gives parameters."


def step_schema() -> dict[str, Any]:
    """``$defs.step`` of config.schema.json: a bare name, or a one-key mapping to the argument."""
    return {
        "description": STEP_DESCRIPTION,
        "oneOf": [
            {"type": "string", "enum": [name for name, action in ACTIONS.items() if action.bare]},
            {
                "type": "object",
                "minProperties": 1,
                "maxProperties": 1,
                "additionalProperties": False,
                "properties": {name: action.schema for name, action in ACTIONS.items()},
            },
        ],
    }


def with_actions(schema: dict[str, Any]) -> dict[str, Any]:
    """The rules schema with its action part (the step and its shared argument shapes) from here."""
    defs = dict(schema["$defs"])
    defs["step"] = step_schema()
    defs.update(PARAM_DEFS)
    return {**schema, "$defs": defs}


SOURCES_DESCRIPTION = "The product's ids on each platform that sells it: its webhooks name these"


def sources_schema() -> dict[str, Any]:
    """``$defs.product.properties.sources``: a list of product ids per source."""
    return {
        "type": "object",
        "additionalProperties": False,
        "minProperties": 1,
        "description": SOURCES_DESCRIPTION,
        "properties": {
            name: {"type": "array", "minItems": 1, "items": dict(source.product_id_schema)}
            for name, source in SOURCES.items()
        },
    }


UNMANAGED_DESCRIPTION = (
    "Product ids the course sells outside the engine: their events are ignored, not flagged as needs_attention. "
    "A list holds {default} ids; per platform: {{{examples}}}."
)


def unmanaged_schema() -> dict[str, Any]:
    """``$defs.catalog.properties.unmanaged_products``: the default source's ids as a plain list
    (as it always was), or a list of ids per source (as a product's ``sources:``)."""
    examples = ", ".join(f"{name}: [{source.product_id_example}]" for name, source in SOURCES.items())
    return {
        "description": UNMANAGED_DESCRIPTION.format(default=DEFAULT_SOURCE.title, examples=examples),
        "type": ["array", "object"],
        "items": dict(DEFAULT_SOURCE.product_id_schema),
        "uniqueItems": True,
        "additionalProperties": False,
        "properties": {
            name: {
                "description": f"{source.title} product ids the course sells outside the engine",
                "type": "array",
                "items": dict(source.product_id_schema),
                "uniqueItems": True,
            }
            for name, source in SOURCES.items()
        },
    }


def with_sources(schema: dict[str, Any]) -> dict[str, Any]:
    """The rules schema with a product's ``sources:`` and the catalogue's ``unmanaged_products``
    from the sources registry."""
    product = dict(schema["$defs"]["product"])
    product["properties"] = {**product["properties"], "sources": sources_schema()}
    catalog = dict(schema["$defs"]["catalog"])
    catalog["properties"] = {**catalog["properties"], "unmanaged_products": unmanaged_schema()}
    return {**schema, "$defs": {**schema["$defs"], "product": product, "catalog": catalog}}


def generated(schema: dict[str, Any]) -> dict[str, Any]:
    """Every generated part of the rules schema, from the registries."""
    return with_sources(with_actions(schema))


def main() -> None:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    SCHEMA_PATH.write_text(json.dumps(generated(schema), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":  # pragma: no cover
    main()
