"""events.change_key deduplicates between the two paths only: a webhook and the sync's event of one change

0017 made ``change_key`` unique across every event, so a second webhook of one change (a new
envelope id, a later ``creation_date``) became a duplicate of the first, and whichever arrived first
was kept: the event log then depended on arrival order. Two webhooks of one change are both kept
again (their creation dates order them, and the later one is stale); the key stays unique among the
events the sync stored (``origin`` set), and the intake refuses a webhook whose change the sync
stored already, and a sync event whose change any event brought (engine.pipeline.intake).

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

FROM_THE_API = "origin IS NOT NULL"


def upgrade() -> None:
    op.drop_index("uq_events_change_key", table_name="events")
    op.create_index("ix_events_change_key", "events", ["change_key"])
    op.create_index(
        "uq_events_api_change_key",
        "events",
        ["change_key"],
        unique=True,
        postgresql_where=sa.text(FROM_THE_API),
        sqlite_where=sa.text(FROM_THE_API),
    )


def downgrade() -> None:
    # 0017's index is unique over every event: a change two webhooks brought keeps its key on the first
    # (the event log is insert-only on PostgreSQL: its trigger is lifted for this one statement).
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        op.execute("ALTER TABLE events DISABLE TRIGGER events_insert_only")
    op.execute(
        "UPDATE events SET change_key = NULL WHERE change_key IS NOT NULL AND EXISTS "
        "(SELECT 1 FROM events AS earlier WHERE earlier.change_key = events.change_key AND earlier.id < events.id)"
    )
    if postgres:
        op.execute("ALTER TABLE events ENABLE TRIGGER events_insert_only")
    op.drop_index("uq_events_api_change_key", table_name="events")
    op.drop_index("ix_events_change_key", table_name="events")
    op.create_index("uq_events_change_key", "events", ["change_key"], unique=True)
