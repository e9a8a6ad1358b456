"""needs_attention, poison events, grouped alerts and the rules version of each plan

- events.rules_version: the rules version (content hash, plus the git commit) that planned it
- events.failures: how many times the worker raised on it (poison after WORKER_MAX_FAILURES)
- alerts.group_key / count / last_seen_at: one open alert per cause, counting occurrences
- alerts.notified_at: when it was last posted to the admin channel (reposts are spaced)

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("rules_version", sa.String(length=80), nullable=True))
        batch.add_column(sa.Column("failures", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("group_key", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("count", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("notified_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_alerts_group_key", "alerts", ["group_key"])


def downgrade() -> None:
    op.drop_index("ix_alerts_group_key", table_name="alerts")
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("notified_at")
        batch.drop_column("last_seen_at")
        batch.drop_column("count")
        batch.drop_column("group_key")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("failures")
        batch.drop_column("rules_version")
