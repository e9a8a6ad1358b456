"""Rule files, versions, and `engine check`'s note about what is not rules."""

from __future__ import annotations

import re
import shutil
import subprocess

from click.testing import CliRunner

from engine.cli import main
from engine.pipeline.rules_repository import RulesRepository
from engine.rules.files import content_hash, git_commit, rules_version
from tests.conftest import RULES


def test_the_version_is_a_content_hash_plus_the_git_commit(tmp_path):
    copy = tmp_path / "rules"
    shutil.copytree(RULES, copy)
    assert re.fullmatch(r"[0-9a-f]{12}", rules_version(copy))  # not in a git work tree
    assert content_hash(copy) == content_hash(RULES)  # the same rules, the same hash
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "add", "."], check=True)
    subprocess.run(
        ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "rules"],
        check=True,
    )
    head = subprocess.run(
        ["git", "-C", str(tmp_path), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert rules_version(copy) == f"{content_hash(copy)}@{head}"
    (copy / "catalog.yaml").write_text((copy / "catalog.yaml").read_text() + "\n# edited\n")
    assert git_commit(copy) == f"{head}-dirty"
    assert content_hash(copy) != content_hash(RULES)
    assert RulesRepository(copy).version == f"{content_hash(copy)}@{head}-dirty"


def test_check_notes_files_and_folders_that_are_not_rules(tmp_path):
    copy = tmp_path / "rules"
    shutil.copytree(RULES, copy)
    shutil.copytree(copy, copy / "backup-2026")
    result = CliRunner().invoke(main, ["check", "--rules", str(copy)])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        "note: rules/backup-2026/ ignored: only rules/*.yaml and rules/products/*.yaml are rules"
    ]
    assert result.stdout.startswith("ok: 6 files, 3 products")


def test_a_repository_may_start_without_valid_rules(tmp_path):
    copy = tmp_path / "rules"
    shutil.copytree(RULES, copy)
    (copy / "onboarding.yaml").unlink()
    repository = RulesRepository(copy, strict=False)
    assert (repository.available, repository.version) == (False, None)
    assert repository.load_error == "rules/:1: no onboarding file (a file whose top-level key is 'onboarding:')"
    digest, problems = repository.take_failure()
    assert digest == content_hash(copy) and [str(p) for p in problems] == [repository.load_error]
    assert repository.take_failure() is None  # one report per broken version


def test_a_command_that_needs_valid_rules_ends_with_one_line_per_error(tmp_path, monkeypatch):
    copy = tmp_path / "rules"
    shutil.copytree(RULES, copy)
    (copy / "onboarding.yaml").unlink()
    monkeypatch.setenv("RULES_DIR", str(copy))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'engine.db'}")
    from engine.settings import get_settings

    get_settings.cache_clear()
    try:
        csv = tmp_path / "students.csv"
        csv.write_text("email,product\nana@example.com,curso\n")
        result = CliRunner().invoke(main, ["import-students", str(csv), "--dry-run"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "error: rules/:1: no onboarding file (a file whose top-level key is 'onboarding:')",
        "1 error(s) in the rules: run `engine check`",
    ]
    assert "Traceback" not in result.output
