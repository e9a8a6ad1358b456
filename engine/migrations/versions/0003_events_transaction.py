"""events.transaction: a refunded purchase never grants again, whatever the order

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("transaction", sa.String(length=64), nullable=True))
        batch.create_index("ix_events_transaction", ["transaction"])


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_index("ix_events_transaction")
        batch.drop_column("transaction")
