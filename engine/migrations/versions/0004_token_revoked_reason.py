"""onboarding_tokens.revoked_reason: tell a student whose access ended from one with a newer code

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("onboarding_tokens") as batch:
        batch.add_column(sa.Column("revoked_reason", sa.String(length=20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("onboarding_tokens") as batch:
        batch.drop_column("revoked_reason")
