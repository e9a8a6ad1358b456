"""The README's documentation that is generated from the rules stays true."""

from __future__ import annotations

from engine.authoring.graph import mermaid
from engine.rules import check_rules, load_rules
from tests.conftest import REPO, RULES


def test_readme_shows_the_current_engine_graph():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- engine graph: begin -->\n```mermaid\n", 1)[1].split("```\n<!-- engine graph: end -->")[0]
    assert block == mermaid(load_rules(RULES))


def test_readme_quick_start_names_the_two_commands_ci_runs():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "make run" in readme and "make test" in readme
    assert "make test" in (REPO / ".ci" / "run").read_text(encoding="utf-8")


# The README's table of typical mistakes: each row made in a copy of the rules, in row order.
MISTAKES = [
    (
        "lifecycle.yaml",
        "        - schedule: {event: ONBOARDING_REMINDER, after: 24h}\n",
        "        - schedule: {event: ONBOARDING_REMINDER, after: 24 hours}\n",
    ),
    (
        "products/curso.yaml",
        '    discord_roles: ["1180000000000000001"]\n',
        "    discord_roles: [1180000000000000004]\n",
    ),
    ("lifecycle.yaml", "      from: [new, refunded, churned]\n", "      form: [new, refunded, churned]\n"),
    ("lifecycle.yaml", "      to: active\n      if: discord_linked\n", "      to: activ\n      if: discord_linked\n"),
    ("products/curso.yaml", "    billet_reminder: content20261101000000_000005\n", ""),
]


def _mistake_rows() -> list[list[str]]:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    table = readme.split("<!-- check mistakes: begin -->\n", 1)[1].split("<!-- check mistakes: end -->")[0]
    rows = [line.strip("|").split(" | ") for line in table.splitlines()[2:]]
    return [[cell.strip() for cell in row] for row in rows]


def test_readme_mistake_table_matches_the_real_messages(tmp_path):
    from tests.engine.test_rules_check import copy_rules, edit

    rows = _mistake_rows()
    assert len(rows) == len(MISTAKES) == 5
    for index, ((wrote, where, says), (file, old, new)) in enumerate(zip(rows, MISTAKES, strict=True)):
        rules_dir = copy_rules(tmp_path / str(index))
        edit(rules_dir, file, old, new)
        _, problems = check_rules(rules_dir)
        assert [(p.file, p.message) for p in problems] == [(f"rules/{file}", says)]
        assert where == f"`rules/{file}`"
        if new:  # the row shows what was written
            assert wrote.strip("`") in new
