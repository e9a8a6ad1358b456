"""index events (source, received_at): each platform's last webhook without reading every event

The sweep asks, for every platform, when its last webhook arrived (the silence alert), and so does
`/metrics`; on the received_at index alone, a platform that never sent one made that a read of every
event, at every sweep and every scrape.

Revision ID: 0011
Revises: 0010
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_events_source_received_at", "events", ["source", "received_at"])


def downgrade() -> None:
    op.drop_index("ix_events_source_received_at", table_name="events")
