"""``INSERT ... ON CONFLICT`` for the database in use: PostgreSQL, or SQLite in the embedded setup."""

from __future__ import annotations

from sqlalchemy import Connection
from sqlalchemy.orm import Session


def insert_for(bind: Session | Connection):
    """The dialect's ``insert`` (with ``on_conflict_do_*``); the other dialect is never imported,
    which keeps a PostgreSQL process from loading SQLite's (a tenth of a second at start)."""
    dialect = (bind.dialect if isinstance(bind, Connection) else bind.get_bind().dialect).name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert
