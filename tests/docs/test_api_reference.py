"""The admin API page the docs site generates (docs/hooks/api_reference.py) covers the whole
OpenAPI of the app: every path and method, parameter, response and schema."""

from __future__ import annotations

from docs.hooks.api_reference import METHODS, api_markdown, openapi_spec, operation_anchor, schema_anchor


def test_every_operation_of_the_openapi_is_on_the_api_page():
    spec = openapi_spec()
    page = api_markdown(spec)
    operations = [(method, path) for path, item in spec["paths"].items() for method in METHODS if method in item]
    assert len(operations) >= 14
    for method, path in operations:
        operation = spec["paths"][path][method]
        section = page.split(f"### `{method.upper()} {path}` {{#{operation_anchor(method, path)}}}", 1)[1]
        section = section.split("\n### ", 1)[0]
        assert f"](#{operation_anchor(method, path)})" in page  # the summary table links to it
        for parameter in operation.get("parameters", []):
            assert f"| `{parameter['name']}` | {parameter['in']} |" in section
        for code in operation["responses"]:
            assert f"\n| {code} |" in section
        if "requestBody" in operation:
            assert "Request body" in section


def test_every_schema_of_the_openapi_is_on_the_api_page_and_every_reference_resolves():
    spec = openapi_spec()
    page = api_markdown(spec)
    schemas = spec["components"]["schemas"]
    for name, schema in schemas.items():
        assert f"### {name} {{#{schema_anchor(name)}}}" in page
        for field in schema.get("properties", {}):
            assert f"| `{field}` |" in page
    # A link to a schema always has its section.
    import re

    linked = set(re.findall(r"\]\(#(schema-[a-z0-9]+)\)", page))
    assert linked and linked <= {schema_anchor(name) for name in schemas}


def test_the_page_is_generated_from_the_spec_the_running_app_serves(make_harness):
    import dataclasses
    from types import SimpleNamespace

    from engine.api.app import create_app

    harness = make_harness()
    # An install's spec lists its own rules' states and products; the page documents none.
    without_rules = dataclasses.replace(harness.runtime, rules=SimpleNamespace(available=False))
    assert create_app(without_rules).openapi() == openapi_spec()
    served = create_app(harness.runtime).openapi()
    state = next(p for p in served["paths"]["/admin/students"]["get"]["parameters"] if p["name"] == "state")
    assert "pending_onboarding" in state["schema"]["enum"]
