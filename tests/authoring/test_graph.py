"""``engine graph`` through click's CliRunner."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli import main
from tests.conftest import RULES

pytestmark = pytest.mark.usefixtures("rules_checked_once")


def test_graph_is_a_mermaid_state_diagram() -> None:
    result = CliRunner().invoke(main, ["graph", "--rules", str(RULES)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "stateDiagram-v2"
    assert lines[1] == "    [*] --> new"
    assert "    pending_onboarding --> active: DISCORD_LINKED" in lines
    assert "    new --> pending_onboarding: PURCHASE_APPROVED [unless discord_linked]" in lines
    assert "    active --> overdue: PURCHASE_DELAYED (subscription)" in lines
    assert "    pending_payment --> new: PURCHASE_CANCELED" in lines
    # an internal transition loops on its state
    assert "    active --> active: MEMBER_JOINED" in lines
    # every edge label is a single "a --> b: label" (mermaid cuts a label at a second ':')
    for line in lines[2:]:
        assert line.count(":") == 1, line


def test_graph_markdown_wraps_the_diagram_in_a_mermaid_fence() -> None:
    plain = CliRunner().invoke(main, ["graph", "--rules", str(RULES)]).stdout
    result = CliRunner().invoke(main, ["graph", "--rules", str(RULES), "--markdown"])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"```mermaid\n{plain}```\n"
    assert plain.endswith("\n")  # so the closing fence starts its own line


def test_graph_with_broken_rules_exits_1(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["graph", "--rules", str(tmp_path)])
    assert result.exit_code == 1
    assert (
        result.stderr.splitlines()[0]
        == f"{tmp_path.name}/:1: no lifecycle file (a file whose top-level key is 'lifecycle:')"
    )
