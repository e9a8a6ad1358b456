"""The ``engine`` command fails with one line ``error: ...`` and a non-zero code, never a traceback."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from engine.cli import main
from engine.settings import get_settings
from tests.conftest import REFERENCE, RULES

# A production environment with no secret at all: read-only commands must still work.
NO_SECRETS = {
    "ENGINE_ENV": "production",
    "HOTMART_HOTTOK": None,
    "ADMIN_API_TOKEN": None,
    "DATABASE_URL": None,
    "REDIS_URL": None,
    "RULES_DIR": None,
    "VAR_DIR": None,
}


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory outside the project: no rules/, no var/, no .env."""
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def invoke(*args: str, **env: str | None) -> Result:
    return CliRunner().invoke(main, list(args), env={**NO_SECRETS, **env})


def one_error_line(result: Result) -> str:
    assert result.exit_code == 1, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit)  # handled, not a crash
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output.startswith("engine, version ")


@pytest.mark.parametrize(
    "command", [["check"], ["graph"], ["test"], ["dry-run", str(REFERENCE / "purchase_approved.json")]]
)
def test_outside_the_project_says_where_it_looked_for_the_rules(elsewhere: Path, command: list[str]) -> None:
    line = one_error_line(invoke(*command))
    assert line.startswith(f"error: no rules directory at {elsewhere / 'rules'}")
    assert "RULES_DIR" in line and "--rules" in line


def test_events_outside_the_project_says_where_it_looked_and_creates_no_database(elsewhere: Path) -> None:
    line = one_error_line(invoke("events"))
    assert f"{elsewhere / 'var' / 'engine.db'} does not exist" in line
    assert "DATABASE_URL" in line and "VAR_DIR" in line
    assert not (elsewhere / "var").exists()


@pytest.mark.parametrize("command", ["serve", "worker", "bot"])
def test_services_outside_the_project_create_no_stray_var(elsewhere: Path, command: str) -> None:
    line = one_error_line(invoke(command, ENGINE_ENV="development"))
    assert f"no rules directory at {elsewhere / 'rules'}" in line
    assert not (elsewhere / "var").exists()


def test_read_only_commands_need_no_secret(elsewhere: Path) -> None:
    for command in (["check"], ["graph"], ["dry-run", str(REFERENCE / "purchase_approved.json"), "--json"]):
        result = invoke(*command, "--rules", str(RULES))
        assert result.exit_code == 0, (command, result.output)
    (elsewhere / "var").mkdir()
    sqlite3.connect(elsewhere / "var" / "engine.db").close()  # a database file, but no tables
    line = one_error_line(invoke("events"))
    assert "HOTMART_HOTTOK" not in line  # it got past the settings without secrets
    assert line.startswith("error: the database has no tables yet") and "engine migrate" in line


def test_missing_secrets_are_named_for_commands_that_need_them(elsewhere: Path) -> None:
    line = one_error_line(invoke("retry", "1", HOTMART_HOTTOK="hottok-value-1234"))
    assert line == "error: invalid settings: ADMIN_API_TOKEN must be set (or ENGINE_ENV=development for local use)"


def test_invalid_settings_name_the_variable_and_never_echo_values(elsewhere: Path) -> None:
    line = one_error_line(invoke("events", QUEUE_NAME="not a valid name", ADMIN_API_TOKEN="s3cret-token-xyz"))
    assert line.startswith("error: invalid settings: QUEUE_NAME: ")
    assert "s3cret-token-xyz" not in line


def test_unreadable_files(elsewhere: Path) -> None:
    result = invoke("dry-run", str(elsewhere / "missing.json"), "--rules", str(RULES))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: cannot read {elsewhere / 'missing.json'}")
    (elsewhere / "var").mkdir()
    sqlite3.connect(elsewhere / "var" / "engine.db").close()
    result = invoke("import-students", str(elsewhere), ENGINE_ENV="development", RULES_DIR=str(RULES))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: cannot read {elsewhere}")


def test_a_database_that_does_not_exist(elsewhere: Path, postgres_url: str) -> None:
    missing = postgres_url.rsplit("/", 1)[0] + "/engine_no_such_database"
    line = one_error_line(invoke("events", DATABASE_URL=missing))
    assert line.startswith("error: database (DATABASE_URL): ")
    assert 'database "engine_no_such_database" does not exist' in line


def test_a_real_process_prints_no_traceback(elsewhere: Path) -> None:
    engine = Path(sys.executable).with_name("engine")
    env = {"PATH": "/usr/bin:/bin", "ENGINE_ENV": "production"}
    done = subprocess.run([str(engine), "events"], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("error: no database:")


def test_retry_help_names_the_force_flag() -> None:
    result = CliRunner().invoke(main, ["retry", "--help"])
    assert result.exit_code == 0
    assert "unless --force" in " ".join(result.output.split())


def test_doctor_runs_without_secrets_and_reports_them(elsewhere: Path) -> None:
    result = invoke("doctor")
    assert result.exit_code == 1
    assert "error: invalid settings" not in result.output
    assert "FAIL  engine    HOTMART_HOTTOK is not set: set it in the environment (.env)" in result.stdout
    assert "FAIL  engine    ADMIN_API_TOKEN is not set: set it in the environment (.env)" in result.stdout


def test_plan_and_status_need_no_secret_and_say_where_the_database_is(elsewhere: Path) -> None:
    for command in (["plan", "--rules", str(RULES)], ["status"]):
        line = one_error_line(invoke(*command, RULES_DIR=str(RULES)))
        assert line.startswith("error: no database: "), command  # past the settings, without secrets
        assert not (elsewhere / "var").exists()
