"""class_enrollments keeps removals: changed_at, removed_at and membership_id, for the read API

The course platform's read API (``GET /api/v1/classes/{key}/enrollments``) pages over a class's
changes in ``(changed_at, id)`` order, removals included. So an unenroll no longer deletes its row:
it sets ``removed_at`` (a tombstone) and ``changed_at``; a later enroll revives the row.

- changed_at: the row's last enrollment or removal; existing rows take their created_at.
- removed_at: null while enrolled.
- membership_id: the membership whose step made the last change (the product and state the API
  shows); existing rows take the membership whose grant of the class is the oldest, if any.
- ix_class_enrollments_changes (class_id, changed_at, id): the API's paging.

Downgrade deletes the tombstones (the schema before it has no way to say "removed"), then drops
the columns and the index: what it deletes is the history of removals, never an enrollment.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

# Spelled out, not imported from the models: a revision stays what it was when the models change.
BigID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("class_enrollments") as batch:
        # Named as PostgreSQL names the models' foreign keys (SQLite's batch copy needs a name).
        batch.add_column(sa.Column("membership_id", BigID, nullable=True))
        batch.create_foreign_key("class_enrollments_membership_id_fkey", "memberships", ["membership_id"], ["id"])
        batch.add_column(sa.Column("changed_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE class_enrollments SET changed_at = created_at")
    op.execute(
        "UPDATE class_enrollments SET membership_id = ("
        " SELECT min(grants.membership_id) FROM grants JOIN classes ON classes.key = grants.resource"
        " WHERE grants.kind = 'class' AND grants.student_id = class_enrollments.student_id"
        " AND classes.id = class_enrollments.class_id)"
    )
    with op.batch_alter_table("class_enrollments") as batch:
        batch.alter_column("changed_at", existing_type=sa.DateTime(timezone=True), nullable=False)
    op.create_index("ix_class_enrollments_changes", "class_enrollments", ["class_id", "changed_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_class_enrollments_changes", table_name="class_enrollments")
    op.execute("DELETE FROM class_enrollments WHERE removed_at IS NOT NULL")
    with op.batch_alter_table("class_enrollments") as batch:
        batch.drop_column("removed_at")
        batch.drop_column("changed_at")
        batch.drop_constraint("class_enrollments_membership_id_fkey", type_="foreignkey")
        batch.drop_column("membership_id")
