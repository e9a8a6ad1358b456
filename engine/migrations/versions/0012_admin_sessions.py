"""admin_sessions and login_attempts: the admin page's sign-in, and the lockout it shares with the API

An index on history (actor, id) serves the admin page's audit view (the newest admin actions).

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

# Spelled out, not imported from the models: a revision stays what it was when the models change.
BigID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "admin_sessions",
        sa.Column("token_hash", sa.String(length=64), primary_key=True),
        sa.Column("operator", sa.String(length=100), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_admin_sessions_expires_at", "admin_sessions", ["expires_at"])
    op.create_table(
        "login_attempts",
        sa.Column("id", BigID, primary_key=True),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("operator", sa.String(length=100), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_login_attempts_address_at", "login_attempts", ["address", "at"])
    op.create_index("ix_history_actor_id", "history", ["actor", "id"])


def downgrade() -> None:
    op.drop_index("ix_history_actor_id", table_name="history")
    op.drop_index("ix_login_attempts_address_at", table_name="login_attempts")
    op.drop_table("login_attempts")
    op.drop_index("ix_admin_sessions_expires_at", table_name="admin_sessions")
    op.drop_table("admin_sessions")
