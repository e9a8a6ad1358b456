"""reconcile_runs: each engine reconcile run (counts, diff, what was applied)

Revision ID: 0007
Revises: 0006
Numbered 0014 until the revisions were put in chain order (engine.db.migrate.RENUMBERED).
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BigID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSONType = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "reconcile_runs",
        sa.Column("id", BigID, primary_key=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("trigger", sa.String(length=20), nullable=False),
        sa.Column("mode", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("students", sa.Integer(), nullable=False),
        sa.Column("counts", JSONType, nullable=True),
        sa.Column("diff", JSONType, nullable=True),
        sa.Column("applied", JSONType, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
    )
    op.create_index("ix_reconcile_runs_started_at", "reconcile_runs", ["started_at"])


def downgrade() -> None:
    op.drop_index("ix_reconcile_runs_started_at", table_name="reconcile_runs")
    op.drop_table("reconcile_runs")
