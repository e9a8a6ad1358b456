"""The README's documentation that is generated from the rules stays true."""

from __future__ import annotations

from engine.graph import mermaid
from engine.rules import load_rules
from tests.conftest import REPO, RULES


def test_readme_shows_the_current_engine_graph():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- engine graph: begin -->\n```mermaid\n", 1)[1].split("```\n<!-- engine graph: end -->")[0]
    assert block == mermaid(load_rules(RULES))


def test_readme_quick_start_names_the_two_commands_ci_runs():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "make run" in readme and "make test" in readme
    assert "make test" in (REPO / ".ci" / "run").read_text(encoding="utf-8")
