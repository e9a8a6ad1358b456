"""Alembic migrations produce exactly the models' schema, on PostgreSQL and on SQLite."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from engine.db.migrate import code_heads, upgrade
from engine.db.models import Base
from engine.settings import Settings


def _diff(url: str) -> list:
    engine = create_engine(url)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    return diff


def test_postgresql_migrations_match_the_models(postgres_url):
    assert _diff(postgres_url.replace("postgresql://", "postgresql+psycopg://")) == []


def test_sqlite_migrations_match_the_models(tmp_path):
    settings = Settings(ENGINE_ENV="test", var_dir=tmp_path)
    upgrade(settings)
    upgrade(settings)  # idempotent: already at head
    assert _diff(settings.sqlalchemy_url) == []


def test_code_heads_read_from_the_files_are_alembics_heads(tmp_path):
    from alembic.script import ScriptDirectory

    from engine.db.migrate import alembic_config, code_heads

    settings = Settings(ENGINE_ENV="test", var_dir=tmp_path)
    assert code_heads() == set(ScriptDirectory.from_config(alembic_config(settings)).get_heads())


def test_a_database_at_head_is_not_migrated_again_and_alembic_is_not_imported(tmp_path, monkeypatch):
    import subprocess
    import sys

    from alembic import command

    settings = Settings(ENGINE_ENV="test", var_dir=tmp_path)
    upgrade(settings)

    def must_not_run(*args, **kwargs):
        raise AssertionError("alembic ran on a database already at head")

    monkeypatch.setattr(command, "upgrade", must_not_run)
    upgrade(settings)  # at head: returns before Alembic
    # `engine serve` / `engine worker` start without importing Alembic (0.4 s each), nor, on
    # PostgreSQL, SQLite's dialect (the upserts import the dialect in use).
    code = (
        "import sys; import engine.db.migrate, engine.pipeline.intake, engine.pipeline.processing\n"
        "assert 'alembic' not in sys.modules, 'alembic imported'\n"
        "assert 'sqlalchemy.dialects.sqlite' not in sys.modules, 'the SQLite dialect imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_the_revisions_are_one_chain_and_their_files_are_numbered_in_its_order():
    import re

    from engine.db.migrate import MIGRATIONS, code_revisions

    revisions = code_revisions()
    [base] = [revision for revision, down in revisions.items() if down is None]
    assert all(down in revisions for down in revisions.values() if down is not None), revisions  # str: no merge
    children = {down: revision for revision, down in revisions.items() if down is not None}
    assert len(children) == len(revisions) - 1, revisions  # no revision revised twice: no branch
    chain = [base]
    while chain[-1] in children:
        chain.append(children[chain[-1]])
    assert len(chain) == len(revisions) and code_heads() == {chain[-1]}
    numbers = [int(revision) for revision in chain]
    assert numbers == sorted(set(numbers)), chain  # each revision numbered after the one it revises
    for path in (MIGRATIONS / "versions").glob("*.py"):
        [revision] = re.findall(r'^revision = "(\w+)"$', path.read_text(encoding="utf-8"), re.MULTILINE)
        assert path.name.startswith(f"{revision}_"), path.name


def test_the_old_ids_of_renumbered_revisions_are_never_used_again():
    from engine.db.migrate import RENUMBERED, code_revisions

    revisions = code_revisions()
    assert set(RENUMBERED.values()) <= set(revisions)
    reused = set(RENUMBERED) & set(revisions) - {"0009"}  # the one id both old and new, told apart by the schema
    assert not reused, f"{reused}: a database stamped with an old id is restamped (engine/db/migrate.py); skip them"


def _stamp(url: str, revision: str) -> None:
    from sqlalchemy import text

    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = :revision"), {"revision": revision})
    engine.dispose()


def _upgrade_from_an_old_id(settings: Settings, old: str) -> None:
    """A database as the code before the renumbering left it at ``old``: the same schema (the
    migrations are unchanged but for their ids), stamped with the old id."""
    from engine.db.migrate import RENUMBERED, database_revisions

    upgrade(settings, RENUMBERED[old])
    _stamp(settings.sqlalchemy_url, old)
    assert database_revisions(settings) == {old}
    upgrade(settings)
    assert database_revisions(settings) == code_heads()


@pytest.mark.parametrize("old", ["0014", "0009", "0015", "0016"])
def test_a_database_stamped_with_an_old_revision_id_upgrades_to_head(tmp_path, old):
    settings = Settings(ENGINE_ENV="test", var_dir=tmp_path)
    _upgrade_from_an_old_id(settings, old)
    assert _diff(settings.sqlalchemy_url) == []


def test_a_database_at_the_new_0009_is_not_taken_for_the_old_one(tmp_path):
    settings = Settings(ENGINE_ENV="test", var_dir=tmp_path)
    upgrade(settings, "0009")  # heartbeats.rules_version (0015 before the renumbering)
    upgrade(settings)  # taken for the old 0009, it would add heartbeats.rules_version twice
    assert _diff(settings.sqlalchemy_url) == []


@pytest.mark.slow
@pytest.mark.parametrize("old", ["0009", "0016"])
def test_a_postgresql_database_stamped_with_an_old_revision_id_upgrades_to_head(postgres_url, old):
    from tests.conftest import throwaway_database

    with throwaway_database(f"engine_test_renumbered_{old}") as url:
        settings = Settings(ENGINE_ENV="test", database_url=url)
        _upgrade_from_an_old_id(settings, old)
        assert _diff(settings.sqlalchemy_url) == []


@pytest.mark.slow
def test_0008_scrubs_body_hottoks_already_stored_and_nothing_else(postgres_url):
    """The one sanctioned rewrite of stored events (see the migration's docstring)."""
    import json

    import psycopg

    from tests.conftest import throwaway_database

    with throwaway_database("engine_test_scrub") as url:
        settings = Settings(ENGINE_ENV="test", database_url=url)
        upgrade(settings, "0007")  # the revision before 0008
        rows = [
            ("a", {"id": "a", "hottok": "s3cret", "data": {"x": 1}}, None),
            ("b", None, "hottok=s3cret&email=a%40b.c"),
            ("c", None, '{"hottok": "s3cret", "n": NaN}'),
            ("d", {"id": "d", "data": {"hottok_like": "keep"}}, None),
        ]
        with psycopg.connect(url, autocommit=True) as conn:
            for key, payload, raw in rows:
                conn.execute(
                    "INSERT INTO events (source, dedupe_key, payload, raw_body, status, correlation_id, received_at)"
                    " VALUES ('hotmart', %s, %s, %s, 'received', 'c', now())",
                    (key, json.dumps(payload) if payload is not None else None, raw),
                )
        upgrade(settings)
        with psycopg.connect(url) as conn:
            stored = {
                key: (payload, raw)
                for key, payload, raw in conn.execute("SELECT dedupe_key, payload, raw_body FROM events")
            }
        assert stored["a"] == ({"id": "a", "hottok": "[removed]", "data": {"x": 1}}, None)
        assert stored["b"] == (None, "hottok=[removed]&email=a%40b.c")
        assert stored["c"] == (None, '{"hottok": "[removed]", "n": NaN}')
        assert stored["d"] == ({"id": "d", "data": {"hottok_like": "keep"}}, None)
