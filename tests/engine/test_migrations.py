"""Alembic migrations produce exactly the models' schema, on PostgreSQL and on SQLite."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from engine.db.migrate import upgrade
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
