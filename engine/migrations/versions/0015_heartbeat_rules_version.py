"""heartbeats.rules_version: the rules a worker runs, so engine doctor can compare them with the disk

Revision ID: 0015
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("heartbeats") as batch:
        batch.add_column(sa.Column("rules_version", sa.String(length=80), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("heartbeats") as batch:
        batch.drop_column("rules_version")
