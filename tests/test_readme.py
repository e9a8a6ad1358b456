"""The README and the documentation pages stay true to the code: what they show that the code
produces (the engine graph, `engine check`'s messages), what they must document (every setting,
every command, the test of every story), and the README's own promises (the two commands, its
links, its size)."""

from __future__ import annotations

import posixpath
import re

import pytest

from engine.authoring.graph import mermaid
from engine.rules import check_rules, load_rules
from tests.conftest import REPO, RULES

DOCS = REPO / "docs"


def _page(relative: str) -> str:
    return (DOCS / relative).read_text(encoding="utf-8")


def _between(text: str, begin: str, end: str) -> str:
    return text.split(begin, 1)[1].split(end)[0]


@pytest.mark.parametrize("page", ["rules/example-lifecycle.md", "pt/rules/example-lifecycle.md"])
def test_the_example_lifecycle_page_shows_the_current_engine_graph(page):
    block = _between(_page(page), "<!-- engine graph: begin -->\n```mermaid\n", "```\n<!-- engine graph: end -->")
    assert block == mermaid(load_rules(RULES))


def test_readme_quick_start_names_the_two_commands_ci_runs():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "make run" in readme and "make test" in readme
    assert "make test" in (REPO / ".ci" / "run").read_text(encoding="utf-8")
    # The getting started page, in both languages, starts from the same two commands.
    for page in ("getting-started.md", "pt/getting-started.md"):
        assert "make run" in _page(page) and "make test" in _page(page)


def test_readme_stays_short_and_its_links_lead_into_the_docs():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) < 200
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [link for link in links if "://" not in link]
    assert local, "the README links into the docs"
    assert [link for link in local if not (REPO / link).is_file()] == []
    assert {"docs/getting-started.md", "docs/admin-loop/index.md", "docs/api.md"} <= set(local)


# The typical mistakes shown on the `engine check` page: each row made in a copy of the rules, in row order.
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


def _mistake_rows(page: str, marker: str = "check mistakes") -> list[list[str]]:
    table = _between(_page(page), f"<!-- {marker}: begin -->\n", f"<!-- {marker}: end -->")
    rows = [line.strip("|").split(" | ") for line in table.splitlines()[2:]]
    return [[cell.strip() for cell in row] for row in rows]


def _real_messages(tmp_path) -> list[list[tuple[str, str]]]:
    """What `engine check` says about each mistake, made alone in a copy of the rules."""
    from tests.engine.test_rules_check import copy_rules, edit

    found = []
    for index, (file, old, new) in enumerate(MISTAKES):
        rules_dir = copy_rules(tmp_path / str(index))
        edit(rules_dir, file, old, new)
        _, problems = check_rules(rules_dir)
        found.append([(p.file, p.message) for p in problems])
    return found


def test_check_page_mistake_table_matches_the_real_messages(tmp_path):
    rows = _mistake_rows("admin-loop/check.md")
    assert len(rows) == len(MISTAKES) == 5
    real = _real_messages(tmp_path)
    for (wrote, where, says), (file, _, new), problems in zip(rows, MISTAKES, real, strict=True):
        assert problems == [(f"rules/{file}", says)]
        assert where == f"`rules/{file}`"
        if new:  # the row shows what was written
            assert wrote.strip("`") in new


def test_portuguese_check_page_mistake_table_matches_the_real_messages_in_portuguese(tmp_path):
    from engine.rules.translate import to_portuguese

    rows = _mistake_rows("pt/admin-loop/check.md", "check mistakes pt-BR")
    english = _mistake_rows("admin-loop/check.md")
    assert len(rows) == len(english) == 5
    real = _real_messages(tmp_path)
    for (wrote, where, says), (wrote_en, where_en, _), problems in zip(rows, english, real, strict=True):
        ((file, message),) = problems
        assert says == to_portuguese(message) and says != message
        assert where == where_en == f"`{file}`"
        if wrote_en.startswith("`"):  # the same YAML (the last row describes it in words)
            assert wrote == wrote_en


def _first_cells(page: str, prefix: str = "| `") -> list[str]:
    """The first column of a reference table: its rows start with a code span."""
    return [line.split(" | ")[0] for line in _page(page).splitlines() if line.startswith(prefix)]


@pytest.mark.parametrize("page", ["operations/configuration.md", "pt/configuration.md"])
def test_every_setting_is_documented_on_the_configuration_page(page):
    from engine.settings import Settings

    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", " ".join(_first_cells(page))))
    variables = {(field.alias or name).upper() for name, field in Settings.model_fields.items()}
    assert sorted(variables - documented) == []


@pytest.mark.parametrize("page", ["operations/command-line.md", "pt/command-line.md"])
def test_every_command_is_on_the_command_line_page(page):
    from engine.cli import main

    rows = _first_cells(page, "| `engine")
    documented = {match for row in rows for match in re.findall(r"`engine ([a-z-]+)", row)}
    assert sorted(set(main.commands) - documented) == []


@pytest.mark.parametrize("name", ["configuration.md", "command-line.md"])
def test_the_portuguese_reference_tables_keep_every_setting_and_command_as_written(name):
    # Row for row, the first column's code (a setting, a command and its options) is the English page's.
    def code(page: str) -> list[list[str]]:
        return [re.findall(r"`[^`]+`", cell) for cell in _first_cells(page)]

    assert code(f"pt/{name}") == code(f"operations/{name}")


def test_the_rule_test_failure_the_docs_show_is_the_one_the_readme_shows():
    # tests/engine/test_ruletests.py checks the README's line against a real `engine test` run.
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    failure = next(line for line in readme.splitlines() if line.startswith("rules/tests/refunds.yaml:"))
    for page in ("admin-loop/rule-tests.md", "pt/admin-loop/rule-tests.md"):
        assert failure in _page(page).splitlines()


def test_every_operator_page_links_to_its_other_language():
    pairs = {
        "getting-started.md": "pt/getting-started.md",
        # Every operations page has a Portuguese twin at docs/pt/<name>; the section's index is pt/operations.md.
        "operations/index.md": "pt/operations.md",
        **{f"operations/{name}": f"pt/{name}" for name in _pages("operations") if name != "index.md"},
        **{f"admin-loop/{name}": f"pt/admin-loop/{name}" for name in _pages("admin-loop")},
        **{f"operations/admin-page/{name}": f"pt/admin-page/{name}" for name in _pages("operations/admin-page")},
        # The rules language is written by admins, so it is operator documentation too; so is the admin API.
        **{f"rules/{name}": f"pt/rules/{name}" for name in _pages("rules")},
        "api.md": "pt/api.md",
    }
    for english, portuguese in pairs.items():
        assert f"*[Português]({_relative(portuguese, english)})*" in _page(english), english
        assert f"*[English]({_relative(english, portuguese)})*" in _page(portuguese), portuguese


def _relative(target: str, page: str) -> str:
    return posixpath.relpath(target, posixpath.dirname(page))


def _pages(folder: str) -> list[str]:
    return sorted(path.name for path in (DOCS / folder).glob("*.md"))


STORIES = 46  # SCENARIOS.md's
STORY_TEST = re.compile(r"^def test_story_(\d\d)_", re.MULTILINE)


def _story_numbers(cell: str) -> set[int]:
    """``"1–27, 29: onboarding ..."`` -> {1, ..., 27, 29}."""
    numbers: set[int] = set()
    for part in cell.split(":", 1)[0].split(","):
        first, _, last = part.strip().partition("–")
        numbers.update(range(int(first), int(last or first) + 1))
    return numbers


def test_every_story_has_a_test_named_after_it_where_the_tests_page_says():
    table = _between(_page("architecture/tests.md"), "| Stories | File |\n|---|---|\n", "\n\n")
    listed: dict[str, set[int]] = {}
    for row in table.splitlines():
        stories, path = (cell.strip() for cell in row.strip("|").split("|"))
        listed.setdefault(path.strip("`"), set()).update(_story_numbers(stories))
    assert set().union(*listed.values()) == set(range(1, STORIES + 1))
    named = {
        path.relative_to(REPO).as_posix(): numbers
        for path in (REPO / "tests").rglob("test_*.py")
        if (numbers := {int(n) for n in STORY_TEST.findall(path.read_text(encoding="utf-8"))})
    }
    assert listed == named
