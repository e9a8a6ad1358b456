"""events.change_key and events.origin, sync_runs: `engine sync hotmart` catches up on missed webhooks

``change_key`` names the change an event makes (a purchase's new status, a subscription's
cancellation), the same whether a webhook or the sync brought it: unique, so the second of one
change is a duplicate. Events stored before it have none and keep working. ``origin`` marks the
events the sync stored: not webhooks, so the index each platform's last webhook is read on
(0011's) covers only the others, and the silence alert never counts a synced event. Both are kept
as stored, as the rest of an event's identity (0008's insert-only trigger, extended here).

Revision ID: 0017
Revises: 0013
The ids 0014 to 0016 are retired (engine.db.migrate.RENUMBERED): the next after 0013 is 0017.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0017"
down_revision = "0013"
branch_labels = None
depends_on = None

BigID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSONType = sa.JSON().with_variant(JSONB(), "postgresql")
WEBHOOKS = "origin IS NULL"
# 0008's columns an event keeps as stored; this revision adds its two.
KEPT = ("payload", "raw_body", "raw_bytes", "payload_changes", "headers", "type", "source", "dedupe_key", "received_at")
IDENTITY = ("origin", "change_key")


def _insert_only(columns: tuple[str, ...], kept: str) -> None:
    """0008's trigger function, keeping ``columns`` (and the id) of every stored event; ``kept``
    names them in its refusal."""
    if op.get_bind().dialect.name != "postgresql":
        return
    changed = " OR ".join(f"NEW.{column} IS DISTINCT FROM OLD.{column}" for column in (*columns, "id"))
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION events_insert_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'DELETE' THEN
                RAISE EXCEPTION 'the event log is insert-only: event % cannot be deleted', OLD.id
                    USING ERRCODE = 'restrict_violation';
            END IF;
            IF {changed} THEN
                RAISE EXCEPTION 'the event log is insert-only: event % keeps its {kept}', OLD.id
                    USING ERRCODE = 'restrict_violation';
            END IF;
            RETURN NEW;
        END $$
        """
    )


def upgrade() -> None:
    op.add_column("events", sa.Column("origin", sa.String(length=20), nullable=True))
    op.add_column("events", sa.Column("change_key", sa.String(length=100), nullable=True))
    op.create_index("uq_events_change_key", "events", ["change_key"], unique=True)
    _insert_only(KEPT + IDENTITY, "payload, raw body, headers, type, received time, origin and change key")
    op.drop_index("ix_events_source_received_at", table_name="events")
    op.create_index(
        "ix_events_source_received_at",
        "events",
        ["source", "received_at"],
        postgresql_where=sa.text(WEBHOOKS),
        sqlite_where=sa.text(WEBHOOKS),
    )
    op.create_table(
        "sync_runs",
        sa.Column("id", BigID, primary_key=True),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("trigger", sa.String(length=20), nullable=False),
        sa.Column("mode", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("counts", JSONType, nullable=True),
        sa.Column("report", JSONType, nullable=True),
        sa.Column("applied", JSONType, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
    )
    op.create_index("ix_sync_runs_started_at", "sync_runs", ["started_at"])


def downgrade() -> None:
    op.drop_index("ix_sync_runs_started_at", table_name="sync_runs")
    op.drop_table("sync_runs")
    op.drop_index("ix_events_source_received_at", table_name="events")
    op.create_index("ix_events_source_received_at", "events", ["source", "received_at"])
    op.drop_index("uq_events_change_key", table_name="events")
    _insert_only(KEPT, "payload, raw body, headers, type and received time")
    # Not batch mode on SQLite: a copy of events would lose its partial indexes (0010's);
    # SQLite drops an unindexed column in place since 3.35.
    for column in ("change_key", "origin"):
        if op.get_bind().dialect.name == "sqlite":
            op.execute(f"ALTER TABLE events DROP COLUMN {column}")
        else:
            op.drop_column("events", column)
