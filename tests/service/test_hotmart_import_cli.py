"""`engine import-students --from hotmart` run as the command (tests/cli.py) against the fake Hotmart
API served over HTTP (tests/fakes/hotmart_api_app.py), on the real PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from engine.db.models import Event, Membership, OnboardingToken, Student
from engine.settings import get_settings
from tests.cli import Ran, run_engine
from tests.conftest import HOTTOK, RULES
from tests.fakes.hotmart_api_app import CLIENT_ID, CLIENT_SECRET, TOKEN_PATH, FakeHotmartApi, basic_token, create_app
from tests.fakes.hotmart_store import HotmartStore
from tests.fakes.server import serve

pytestmark = pytest.mark.integration

COMUNIDADE, CURSO = "2222222", "1111111"


@pytest.fixture
def fake() -> FakeHotmartApi:
    now = datetime.now(UTC)
    store = HotmartStore()
    store.add_subscription(COMUNIDADE, "ana@example.com", accession=now - timedelta(days=200))
    store.add_subscription(COMUNIDADE, "bia@example.com", accession=now - timedelta(days=100))
    store.add_sale(CURSO, "carla@example.com", approved=now - timedelta(days=30))
    return FakeHotmartApi(store=store)


@pytest.fixture
def env(pg: str, fake: FakeHotmartApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    with serve(create_app(fake)) as url:
        values = {
            "DATABASE_URL": pg,
            "ENGINE_ENV": "test",
            "RULES_DIR": str(RULES),
            "VAR_DIR": str(tmp_path),
            "HOTMART_HOTTOK": HOTTOK,
            "HOTMART_CLIENT_ID": CLIENT_ID,
            "HOTMART_CLIENT_SECRET": CLIENT_SECRET,
            "HOTMART_BASIC": basic_token(),
            "HOTMART_AUTH_URL": f"{url}{TOKEN_PATH}",
            "HOTMART_API_BASE": url,
        }
        monkeypatch.delenv("REDIS_URL", raising=False)
        get_settings.cache_clear()
        yield values
        get_settings.cache_clear()


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """What the command hands to the worker's queue."""
    import engine.worker
    from engine.pipeline.queue import MemoryQueue

    queue = MemoryQueue()
    monkeypatch.setattr(engine.worker, "task_queue", lambda: queue)
    return queue.events


def engine(env: dict[str, str], *args: str) -> Ran:
    return run_engine({**os.environ, **env}, "import-students", *args)


def count(h, model) -> int:
    with h.runtime.sessions() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_dry_run_reports_what_hotmart_would_give_and_writes_nothing(make_harness, env):
    h = make_harness()
    result = engine(env, "--from", "hotmart", "--dry-run")
    assert result.returncode == 0, result.output
    assert result.stdout.splitlines()[:5] == [
        "read 3 subscription(s) and purchase(s) from Hotmart (combo, comunidade, curso)",
        "combo: would create 0 membership(s); 0 already there",
        "comunidade: would create 2 membership(s) (2 pending_onboarding); 0 already there",
        "  pending_onboarding: ana@example.com, bia@example.com",
        "curso: would create 1 membership(s) (1 pending_onboarding); 0 already there",
    ]
    assert count(h, Student) == 0


def test_import_then_again_changes_nothing_and_sends_nothing(make_harness, env, queued, tmp_path):
    h = make_harness()
    ids = tmp_path / "discord.csv"
    ids.write_text("email;product;discord_id\nbia@example.com;comunidade;80351110224678912\n", encoding="utf-8")
    first = engine(env, "--from", "hotmart", "--discord-ids", str(ids))
    assert first.returncode == 0, first.output
    assert "comunidade: created 2 membership(s) (1 active, 1 pending_onboarding); 0 already there" in first.stdout
    assert "onboarding: none sent; 2 waiting membership(s) hold a code nobody was told." in first.stdout
    assert "Discord ids: 1 joined" in first.stdout
    with h.runtime.sessions() as session:
        states = {(m.student.email, m.state) for m in session.scalars(select(Membership))}
    assert states == {
        ("ana@example.com", "pending_onboarding"),
        ("bia@example.com", "active"),
        ("carla@example.com", "pending_onboarding"),
    }
    assert queued == [] and count(h, Event) == 0
    again = engine(env, "--from", "hotmart", "--discord-ids", str(ids))
    assert again.returncode == 0, again.output
    assert "comunidade: created 0 membership(s); 2 already there" in again.stdout
    assert count(h, Membership) == 3 and count(h, OnboardingToken) == 2


def test_onboard_queues_one_onboarding_per_waiting_student(make_harness, env, queued):
    h = make_harness()
    on = {**env, "MANYCHAT_ENABLED": "true", "MANYCHAT_API_TOKEN": "1234567:" + "a" * 32}
    result = engine(on, "--from", "hotmart", "--product", "comunidade", "--onboard")
    assert result.returncode == 0, result.output
    assert "onboarding: queued 2 (code, flow, reminders), sent by the worker" in result.stdout
    assert len(queued) == 2 and count(h, Event) == 2
    engine(on, "--from", "hotmart", "--product", "comunidade", "--onboard")
    assert len(queued) == 2 and count(h, Event) == 2  # once


def test_onboard_while_manychat_is_off_is_refused_and_imports_nothing(make_harness, env, queued):
    h = make_harness()
    result = engine(env, "--from", "hotmart", "--onboard")
    assert result.returncode == 1
    assert result.stderr.startswith("error: --onboard sends the onboarding (add_tag) through manychat, but ")
    assert "MANYCHAT_ENABLED is off" in result.stderr
    assert count(h, Student) == 0 and queued == []


def test_missing_credentials_and_a_refusing_hotmart_are_clear_errors(make_harness, env, fake):
    h = make_harness()
    missing = engine({**env, "HOTMART_BASIC": ""}, "--from", "hotmart")
    assert (missing.returncode, missing.stderr.splitlines()[0]) == (
        2,
        "error: HOTMART_BASIC not set: the import reads Hotmart's API with the credentials Hotmart shows "
        "in Tools > Developer Credentials (docs/operations/hotmart-api.md)",
    )
    refused = engine({**env, "HOTMART_BASIC": basic_token(CLIENT_ID, "wrong")}, "--from", "hotmart")
    assert refused.returncode == 1
    assert refused.stderr.startswith(f"error: reading Hotmart failed ({env['HOTMART_API_BASE']}): ")
    assert refused.stderr.rstrip().endswith("; nothing imported")
    assert CLIENT_SECRET not in refused.output
    assert count(h, Student) == 0


def test_a_bad_discord_ids_file_imports_nothing(make_harness, env, tmp_path):
    h = make_harness()
    ids = tmp_path / "discord.csv"
    ids.write_text("email,discord_id\nana@example.com,abc\n", encoding="utf-8")
    result = engine(env, "--from", "hotmart", "--discord-ids", str(ids))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{ids}:2: discord_id 'abc' is not a Discord id",
        "1 error(s); nothing imported",
    ]
    assert count(h, Student) == 0


def test_options_go_with_their_origin(env):
    assert "--from hotmart reads Hotmart, not a file" in engine(env, "--from", "hotmart", "x.csv").stderr
    assert "--product, --discord-ids and --onboard go with --from hotmart" in engine(env, "--onboard", "x.csv").stderr
    assert "a CSV file to import (or --from hotmart)" in engine(env).stderr
    unknown = engine(env, "--from", "hotmart", "--product", "cursinho")
    assert unknown.returncode == 2 and unknown.stderr.startswith("error: unknown product 'cursinho' (products: ")


def test_the_csv_form_is_also_from_csv(make_harness, env, tmp_path):
    h = make_harness()
    path = tmp_path / "students.csv"
    path.write_text("email,product\ndora@example.com,curso\n", encoding="utf-8")
    result = engine(env, "--from", "csv", str(path))
    assert result.returncode == 0, result.output
    assert result.stdout.strip() == "created 1 student(s) and 1 membership(s) (0 already there, 0 grant(s) recorded)"
    assert count(h, Student) == 1
