"""The repository stands alone: README, the docs, tests and bench/ read nothing outside it.

`.ci/standalone` (run by `.ci/run`) proves it end to end: the unit suite in a copy of the
repository with no ../shared beside it. These checks catch a new outside reference early.
"""

from __future__ import annotations

import re

from tests.conftest import CORPUS, REFERENCE, REPO

# A path leaving the repository: "../shared", or a parent of the repository joined with "shared".
OUTSIDE = re.compile(r"\.\./shared|(parent|parents\[\d\])\s*/\s*[\"']shared")


def readers() -> list:
    files = [REPO / "README.md", REPO / "Makefile", REPO / "mkdocs.yml", *REPO.glob(".ci/*")]
    files += (REPO / "docs").rglob("*.md")
    for folder in ("tests", "bench", "engine", "connectors", "bot", "docs"):
        files += (REPO / folder).rglob("*.py")
    return files


def test_no_reader_reaches_outside_the_repository():
    offenders = [
        f"{path.relative_to(REPO)}:{number}"
        for path in readers()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if OUTSIDE.search(line) and path.name != "test_standalone.py"
    ]
    assert offenders == []


def test_sample_payloads_and_corpus_are_in_the_repository():
    assert REFERENCE == REPO / "examples" / "hotmart"
    assert (REFERENCE / "purchase_approved.json").is_file()
    assert len(list(REFERENCE.glob("*.json"))) == 17
    assert CORPUS.is_relative_to(REPO)
    assert len(list(CORPUS.glob("*.json"))) == 87
    # The corpus is MIT-licensed: its notice travels with it.
    assert "MIT License" in (CORPUS / "LICENSE").read_text(encoding="utf-8")


def test_readme_and_docs_examples_name_files_that_exist():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    named = set(re.findall(r"examples/hotmart/[\w.]+\.json", readme))
    assert named, "the quick start names a sample payload"
    for page in (REPO / "docs").rglob("*.md"):
        named |= set(re.findall(r"examples/hotmart/[\w.]+\.json", page.read_text(encoding="utf-8")))
    assert all((REPO / path).is_file() for path in named)
