"""The rules reference the docs site generates (docs/hooks/rules_reference.py) covers the whole
action registry and the whole rules schema, and the build fills every page that asks for it."""

from __future__ import annotations

import dataclasses
import re

import pytest

from docs.hooks.rules_reference import actions_markdown, declaration_fields, load_schema, schema_markdown
from engine.rules.actions import ACTIONS, Action
from tests.conftest import REPO

DOCS = REPO / "docs"


def test_every_action_of_the_registry_has_a_row_and_a_section():
    page = actions_markdown()
    for name, action in ACTIONS.items():
        assert f"| [`{name}`](#{name}) | {action.executor} |" in page
        assert f"## `{name}` {{#{name}}}" in page
        assert f"- {action.example}" in page


def test_the_actions_reference_follows_the_declaration_it_is_given():
    # A fact added to an action's declaration shows without a change to the generator.
    @dataclasses.dataclass(frozen=True)
    class Declared(Action):
        audience: str | None = None

    base = ACTIONS["add_role"]
    declared = Declared(**{f.name: getattr(base, f.name) for f in dataclasses.fields(base)}, audience="students")
    assert "audience" in declaration_fields(declared)
    page = actions_markdown({"add_role": declared})
    assert "- **audience**: students" in page
    assert "send_dm" not in page  # only what it was given


def test_an_action_argument_is_shown_with_its_shared_shapes_written_out():
    page = actions_markdown()
    section = page.split("## `add_role`", 1)[1].split("\n## ", 1)[0]
    assert "$ref" not in section
    assert '"account"' in section and '"^[0-9]{15,21}$"' in section


def _key_paths(schema: dict, prefix: str) -> list[str]:
    paths = []
    for name, sub in schema.get("properties", {}).items():
        path = f"{prefix}.{name}" if prefix else name
        paths.append(path)
        paths += _key_paths(sub, path)
        if sub.get("type") == "array":
            paths += _key_paths(sub.get("items", {}), f"{path}[]")
    return paths


def test_every_key_of_every_rules_file_is_in_the_schema_reference():
    schema = load_schema()
    page = schema_markdown(schema)
    defs = schema["$defs"]
    for kind in ("lifecycle", "product", "catalog", "onboarding", "transition"):
        prefix = "" if kind == "transition" else kind
        paths = _key_paths(defs[kind], prefix)
        assert paths, kind
        for path in paths:
            assert f"| `{path}` |" in page, path
    for kind in schema["properties"]:
        assert f"## `{kind}` {{#{kind}}}" in page
    # Every bare step and every action the schema allows.
    step = defs["step"]["oneOf"]
    for name in step[0]["enum"] + list(step[1]["properties"]):
        assert f"`{name}`" in page


def test_the_schema_reference_reads_the_schema_engine_check_uses():
    assert load_schema() == load_schema(REPO / "engine" / "config.schema.json")
    assert (REPO / "config.schema.json").read_bytes() == (REPO / "engine" / "config.schema.json").read_bytes()


def test_the_hand_written_steps_table_names_every_action():
    # The explanation beside the generated reference names each action too (it does not drift silently).
    table = (DOCS / "rules" / "transitions.md").read_text(encoding="utf-8").split("## Steps", 1)[1]
    named = set(re.findall(r"^\| `(\w+)`(?: / `(\w+)`)?", table, re.MULTILINE))
    assert {name for pair in named for name in pair if name} == set(ACTIONS)


def test_the_build_fills_every_generated_part_the_pages_ask_for(monkeypatch):
    monkeypatch.syspath_prepend(str(DOCS / "hooks"))
    from generated import GENERATORS, fill

    asked = {
        name
        for page in DOCS.rglob("*.md")
        for name in re.findall(r"^<!-- generated: ([a-z_]+) -->$", page.read_text(encoding="utf-8"), re.MULTILINE)
    }
    assert asked == set(GENERATORS) == {"actions", "rules_schema", "admin_api"}
    filled = fill("# Actions\n\n<!-- generated: actions -->\n")
    assert "<!-- generated" not in filled and "## `add_role`" in filled
    with pytest.raises(ValueError, match="unknown generated part 'nothing'"):
        fill("<!-- generated: nothing -->\n")
