"""indexes for the queries each event makes, sized by what is open, not by the history

An event's queries must cost the same on a database holding a year of history as on an empty
one (``bench/event_cost.py``). What grew with the tables, and what answers it now:

- ``action_runs``: a membership's waiting steps (``engine.pipeline.ordering``) went through the
  status index and read every open step of every student (and, until a vacuum, every dead
  version of one): a partial index on ``(membership_id, id)`` over the open statuses. The
  worker's "first step of an event" (``min(id)`` per event) could be planned as a walk of the
  primary key from its start: ``(event_id, id)`` (replacing the plain ``event_id`` index, which
  the ``(event_id, step_index)`` key already covers). No index starts with the status any more:
  the sweep's retrying steps have a partial index, and ``(action, status)`` lets ``/metrics``
  count without reading the table (the step errors it counts: a partial index).
- ``events``: a student's open events (the worker picks the next one before every step), the
  buyer's fresh webhooks (the settle window), the oldest unprocessed event (``/metrics``,
  ``engine status``, the stuck-student watchdog): partial indexes over the open statuses. A
  purchase's refund is looked up by ``(transaction, type)`` (was ``transaction``, then every
  refund in the ``type`` index); ``(type, status)`` replaces ``type`` for ``/metrics``' counts.
- ``alerts``: those not yet posted, and those not acknowledged (the sweep, ``/metrics``).
- ``onboarding_tokens``: a membership's unused codes (``revoke_token``).

Each partial index over open statuses also requires its key column (``membership_id IS NOT
NULL``...): a query on that key implies it, so only such a query can use the index; a query
filtering on the status alone cannot take it as a (small-looking) list of every open row.

On PostgreSQL the hot tables are vacuumed and analyzed after 1 % of their rows changed (the
default waits for 20 % and 10 %): dead index entries of the open statuses do not pile up, and
the planner knows the sizes it plans for from the first thousands of rows on.

Revision ID: 0010
Revises: 0009
Numbered 0016 until the revisions were put in chain order (engine.db.migrate.RENUMBERED).
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# A partial index over the open statuses also names its key column as not null: only a query on that
# key (``membership_id = :id`` implies it) can use it, never one that merely filters on the status.
OPEN_STEPS = "status IN ('pending', 'running', 'retrying', 'failed')"
OPEN_EVENTS = "status IN ('received', 'held', 'processing', 'retrying')"
HOT_TABLES = ("events", "action_runs", "scheduled_events", "grants")
AUTOVACUUM = (
    "autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 1000, "
    "autovacuum_analyze_scale_factor = 0.01, autovacuum_analyze_threshold = 1000"
)
_RESET = (
    "autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold, "
    "autovacuum_analyze_scale_factor, autovacuum_analyze_threshold"
)


def _partial(name: str, table: str, columns: list[str], where: str) -> None:
    """A partial index, the same on PostgreSQL and SQLite."""
    op.create_index(name, table, columns, postgresql_where=sa.text(where), sqlite_where=sa.text(where))


def upgrade() -> None:
    op.drop_index("ix_action_runs_event_id", table_name="action_runs")
    op.create_index("ix_action_runs_event_id_id", "action_runs", ["event_id", "id"])
    op.drop_index("ix_action_runs_status", table_name="action_runs")
    op.create_index("ix_action_runs_action_status", "action_runs", ["action", "status"])
    _partial("ix_action_runs_retrying", "action_runs", ["event_id", "retry_at"], "status = 'retrying'")
    _partial(
        "ix_action_runs_open_membership",
        "action_runs",
        ["membership_id", "id"],
        f"{OPEN_STEPS} AND membership_id IS NOT NULL",
    )
    _partial("ix_action_runs_errors", "action_runs", ["error", "status"], "error IS NOT NULL")

    op.drop_index("ix_events_transaction", table_name="events")
    op.create_index("ix_events_transaction_type", "events", ["transaction", "type"])
    op.drop_index("ix_events_type", table_name="events")
    op.create_index("ix_events_type_status", "events", ["type", "status"])
    _partial("ix_events_open_student", "events", ["student_id", "id"], f"{OPEN_EVENTS} AND student_id IS NOT NULL")
    _partial("ix_events_open_email", "events", ["email"], f"{OPEN_EVENTS} AND email IS NOT NULL")
    _partial("ix_events_open_received", "events", ["received_at", "id"], f"{OPEN_EVENTS} AND received_at IS NOT NULL")

    _partial("ix_alerts_unnotified", "alerts", ["id"], "notified IS NULL")
    _partial("ix_alerts_unacknowledged", "alerts", ["id"], "acknowledged_at IS NULL")

    _partial(
        "ix_onboarding_tokens_unused_membership",
        "onboarding_tokens",
        ["membership_id"],
        "used_at IS NULL AND membership_id IS NOT NULL",
    )

    if op.get_bind().dialect.name == "postgresql":
        for table in HOT_TABLES:
            op.execute(f"ALTER TABLE {table} SET ({AUTOVACUUM})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in HOT_TABLES:
            op.execute(f"ALTER TABLE {table} RESET ({_RESET})")
    op.drop_index("ix_onboarding_tokens_unused_membership", table_name="onboarding_tokens")
    op.drop_index("ix_alerts_unacknowledged", table_name="alerts")
    op.drop_index("ix_alerts_unnotified", table_name="alerts")
    op.drop_index("ix_events_open_received", table_name="events")
    op.drop_index("ix_events_open_email", table_name="events")
    op.drop_index("ix_events_open_student", table_name="events")
    op.drop_index("ix_events_type_status", table_name="events")
    op.create_index("ix_events_type", "events", ["type"])
    op.drop_index("ix_events_transaction_type", table_name="events")
    op.create_index("ix_events_transaction", "events", ["transaction"])
    op.drop_index("ix_action_runs_errors", table_name="action_runs")
    op.drop_index("ix_action_runs_open_membership", table_name="action_runs")
    op.drop_index("ix_action_runs_retrying", table_name="action_runs")
    op.drop_index("ix_action_runs_action_status", table_name="action_runs")
    op.create_index("ix_action_runs_status", "action_runs", ["status"])
    op.drop_index("ix_action_runs_event_id_id", table_name="action_runs")
    op.create_index("ix_action_runs_event_id", "action_runs", ["event_id"])
