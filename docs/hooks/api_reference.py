"""The admin API's reference, written from the app's own OpenAPI when the site is built.

The spec is the one ``/openapi.json`` serves: ``engine.api.app.create_app`` builds the routes
without touching the database or the queue (the runtime is read only when a request comes), so a
stand-in runtime with the settings the app reads at build time is enough. Every path, parameter,
request body, response and schema of the spec is rendered; nothing is written by hand here.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

METHODS = ("get", "post", "put", "patch", "delete")


def openapi_spec() -> dict[str, Any]:
    """The OpenAPI document of the deployed app's routes."""
    from engine.api.app import create_app

    # What create_app reads before any request: the docs mode (``off`` adds no route to the spec).
    # No rules loaded: a state or product filter is documented as text (an install lists its own).
    runtime = SimpleNamespace(settings=SimpleNamespace(api_docs_mode="off"), rules=SimpleNamespace(available=False))
    return create_app(runtime).openapi()


def schema_anchor(name: str) -> str:
    return f"schema-{name.lower()}"


def operation_anchor(method: str, path: str) -> str:
    slug = "".join(ch if ch.isalnum() else "-" for ch in path.lower()).strip("-")
    while "--" in slug:
        slug = slug.replace("--", "-")
    return f"{method}-{slug}"


def _cell(text: str) -> str:
    """Text for a table cell: one line, a pipe outside code escaped (inside a code span it splits nothing)."""
    parts = " ".join(str(text).split()).split("`")
    return "`".join(part if index % 2 else part.replace("|", "\\|") for index, part in enumerate(parts))


def describe(schema: dict[str, Any]) -> str:
    """A schema in a few words: ``integer ≤ 500``, ``list of [StepOut](#schema-stepout)``..."""
    if not schema:
        return "any JSON"
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{schema_anchor(name)})"
    for combinator in ("anyOf", "oneOf"):
        if combinator in schema:
            options = [describe(option) for option in schema[combinator] if option.get("type") != "null"]
            nullable = any(option.get("type") == "null" for option in schema[combinator])
            return " or ".join(options) + (" or null" if nullable else "")
    if "enum" in schema:
        return "one of " + ", ".join(f"`{value}`" for value in schema["enum"])
    kind = schema.get("type", "any")
    if kind == "array":
        text = "list of " + describe(schema.get("items", {}))
    elif kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        text = "mapping of string to " + describe(schema["additionalProperties"])
    else:
        text = kind
    if "format" in schema:
        text += f" ({schema['format']})"
    limits = [
        f"{word} {schema[key]}"
        for key, word in (("minimum", "≥"), ("maximum", "≤"), ("minLength", "length ≥"), ("maxLength", "length ≤"))
        if key in schema
    ]
    return text + (", " + ", ".join(limits) if limits else "")


def _parameter_rows(parameters: list[dict[str, Any]]) -> list[str]:
    lines = ["| parameter | in | type | required | default | description |", "|---|---|---|---|---|---|"]
    for parameter in parameters:
        schema = parameter.get("schema", {})
        default = f"`{json.dumps(schema['default'])}`" if "default" in schema else ""
        description = parameter.get("description") or schema.get("description", "")
        required = "yes" if parameter.get("required") else ""
        lines.append(
            f"| `{parameter['name']}` | {parameter['in']} | {_cell(describe(schema))} | {required} | {default} "
            f"| {_cell(description)} |"
        )
    return lines


def _body_schema(content: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    for media_type, body in content.items():
        return media_type, body.get("schema", {})
    return None


def _token(scheme: dict[str, Any]) -> str:
    """The setting a bearer scheme's description names first (``ADMIN_API_TOKEN``, ``COURSE_API_TOKEN``)."""
    return (scheme.get("description") or "TOKEN").split()[0]


def _operation(
    method: str, path: str, operation: dict[str, Any], schemes: dict[str, dict[str, Any]] | None = None
) -> list[str]:
    lines = [f"### `{method.upper()} {path}` {{#{operation_anchor(method, path)}}}", ""]
    if operation.get("summary"):
        lines += [f"**{operation['summary']}**", ""]
    if operation.get("description"):
        lines += [operation["description"].replace("``", "`"), ""]
    if operation.get("security"):
        names = [name for requirement in operation["security"] for name in requirement]
        tokens = ", ".join(f"`Authorization: Bearer ${_token((schemes or {}).get(name, {}))}`" for name in names)
        lines += [f"Authentication: {', '.join(names)} ({tokens}).", ""]
    if operation.get("parameters"):
        lines += _parameter_rows(operation["parameters"]) + [""]
    body = operation.get("requestBody")
    if body:
        media_type, schema = _body_schema(body.get("content", {})) or ("", {})
        required = " (required)" if body.get("required") else " (optional)"
        lines += [f"Request body{required}: `{media_type}`, {describe(schema)}.", ""]
    lines += ["| status | meaning | body |", "|---|---|---|"]
    for code, response in operation.get("responses", {}).items():
        content = _body_schema(response.get("content", {}))
        shown = f"`{content[0]}`: {describe(content[1])}" if content else ""
        lines.append(f"| {code} | {_cell(response.get('description', ''))} | {_cell(shown)} |")
    return lines + [""]


def _schema_section(name: str, schema: dict[str, Any]) -> list[str]:
    lines = [f"### {name} {{#{schema_anchor(name)}}}", ""]
    if schema.get("description"):
        lines += [" ".join(schema["description"].split()), ""]
    if "enum" in schema:
        return lines + [describe(schema), ""]
    properties = schema.get("properties", {})
    if not properties:
        return lines + [describe(schema), ""]
    required = set(schema.get("required", ()))
    lines += ["| field | type | required | description |", "|---|---|---|---|"]
    for field, sub in properties.items():
        lines.append(
            f"| `{field}` | {_cell(describe(sub))} | {'yes' if field in required else ''} "
            f"| {_cell(sub.get('description', ''))} |"
        )
    return lines + [""]


def api_markdown(spec: dict[str, Any] | None = None) -> str:
    """Every operation of the spec, grouped by tag in the spec's order, then every schema."""
    spec = openapi_spec() if spec is None else spec
    info = spec.get("info", {})
    lines = [f"*{info.get('title', '')} {info.get('version', '')}, OpenAPI {spec.get('openapi', '')}.*", ""]
    by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, operations in spec.get("paths", {}).items():
        for method in METHODS:
            if method in operations:
                tag = (operations[method].get("tags") or ["other"])[0]
                by_tag.setdefault(tag, []).append((method, path, operations[method]))
    lines += ["| operation | summary |", "|---|---|"]
    for operations in by_tag.values():
        for method, path, operation in operations:
            link = f"[`{method.upper()} {path}`](#{operation_anchor(method, path)})"
            lines.append(f"| {link} | {_cell(operation.get('summary', ''))} |")
    lines.append("")
    for tag, operations in by_tag.items():
        lines += [f"## {tag.capitalize()}", ""]
        for method, path, operation in operations:
            lines += _operation(method, path, operation, spec.get("components", {}).get("securitySchemes"))
    lines += ["## Schemas", ""]
    for name, schema in spec.get("components", {}).get("schemas", {}).items():
        lines += _schema_section(name, schema)
    return "\n".join(lines)
