"""heartbeats.rules_version: the rules a worker runs, so engine doctor can compare them with the disk

Revision ID: 0009
Revises: 0008
Numbered 0015 until the revisions were put in chain order (engine.db.migrate.RENUMBERED).
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("heartbeats") as batch:
        batch.add_column(sa.Column("rules_version", sa.String(length=80), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("heartbeats") as batch:
        batch.drop_column("rules_version")
