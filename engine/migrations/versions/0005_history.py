"""history: the audit trail of replays, state renames, imports and admin requests

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BigID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "history",
        sa.Column("id", BigID, primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("student_id", BigID, sa.ForeignKey("students.id"), nullable=True),
        sa.Column("membership_id", BigID, sa.ForeignKey("memberships.id"), nullable=True),
        sa.Column("event_id", BigID, sa.ForeignKey("events.id"), nullable=True),
        sa.Column("actor", sa.String(length=100), nullable=True),
        sa.Column("rules_version", sa.String(length=80), nullable=True),
        sa.Column("detail", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=True),
    )
    op.create_index("ix_history_student_id", "history", ["student_id"])
    op.create_index("ix_history_event_id", "history", ["event_id"])


def downgrade() -> None:
    op.drop_index("ix_history_event_id", table_name="history")
    op.drop_index("ix_history_student_id", table_name="history")
    op.drop_table("history")
