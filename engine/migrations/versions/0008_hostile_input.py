"""hostile input: raw bytes kept verbatim, body hottoks scrubbed, events insert-only, heartbeats

Revision ID: 0008
Revises: 0007
Numbered 0009 until the revisions were put in chain order (engine.db.migrate.RENUMBERED).

1. ``events.raw_bytes`` (bytea) and ``events.payload_changes``: a body jsonb cannot hold is
   stored anyway, its bytes verbatim and its payload sanitised with a note of what changed.
2. The one sanctioned rewrite of stored events: a hottok sent in the body (old Hotmart
   configurations do) was stored in clear in ``events.payload`` and ``events.raw_body``. Its
   value is replaced by ``"[removed]"`` in every row already stored (intake removes it before
   the insert from now on). Nothing else in those rows changes.
3. On PostgreSQL, a trigger makes the event log insert-only: an event's payload, raw body,
   raw bytes, payload changes, headers, type, source, dedupe key and received time cannot be
   updated, and events cannot be deleted (TRUNCATE, an operator's explicit act, still works).
   Status and decision columns stay writable.
4. ``heartbeats``: the worker writes its own row; ``/healthz`` and ``engine healthcheck``
   read its age.
"""

import re

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

REMOVED = "[removed]"
# Frozen copies of the intake's patterns (a migration must not change when the code does).
_JSON_MEMBER = re.compile(r'("hottok"\s*:\s*)("(?:[^"\\]|\\.)*"|[^,}\]\s]+)', re.IGNORECASE)
_FORM_FIELD = re.compile(r"((?:^|[&;])\s*hottok=)[^&;]*", re.IGNORECASE)

IMMUTABLE = (
    "payload",
    "raw_body",
    "raw_bytes",
    "payload_changes",
    "headers",
    "type",
    "source",
    "dedupe_key",
    "received_at",
    "id",
)


def _scrub_text(text: str) -> str:
    text = _JSON_MEMBER.sub(lambda m: m.group(1) + '"' + REMOVED + '"', text)
    return _FORM_FIELD.sub(lambda m: m.group(1) + REMOVED, text)


def _scrub_hottoks(bind) -> None:
    postgres = bind.dialect.name == "postgresql"
    if postgres:
        bind.execute(
            sa.text(
                "UPDATE events SET payload = jsonb_set(payload, '{hottok}', to_jsonb(CAST(:removed AS text))) "
                "WHERE jsonb_typeof(payload) = 'object' AND jsonb_exists(payload, 'hottok')"
            ),
            {"removed": REMOVED},
        )
    else:
        bind.execute(
            sa.text(
                "UPDATE events SET payload = json_set(payload, '$.hottok', :removed) "
                "WHERE json_valid(payload) AND json_type(payload) = 'object' "
                "AND json_type(payload, '$.hottok') IS NOT NULL"
            ),
            {"removed": REMOVED},
        )
    like = "ILIKE" if postgres else "LIKE"
    rows = bind.execute(sa.text(f"SELECT id, raw_body FROM events WHERE raw_body {like} '%hottok%'")).all()
    for event_id, raw_body in rows:
        scrubbed = _scrub_text(raw_body)
        if scrubbed != raw_body:
            bind.execute(sa.text("UPDATE events SET raw_body = :raw WHERE id = :id"), {"raw": scrubbed, "id": event_id})


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("raw_bytes", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("payload_changes", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=True))
    op.create_table(
        "heartbeats",
        sa.Column("name", sa.String(length=100), primary_key=True),
        sa.Column("beat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    )
    bind = op.get_bind()
    _scrub_hottoks(bind)
    if bind.dialect.name == "postgresql":
        changed = " OR ".join(f"NEW.{column} IS DISTINCT FROM OLD.{column}" for column in IMMUTABLE)
        op.execute(
            f"""
            CREATE FUNCTION events_insert_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF TG_OP = 'DELETE' THEN
                    RAISE EXCEPTION 'the event log is insert-only: event % cannot be deleted', OLD.id
                        USING ERRCODE = 'restrict_violation';
                END IF;
                IF {changed} THEN
                    RAISE EXCEPTION 'the event log is insert-only: event % keeps its payload, raw body, '
                        'headers, type and received time', OLD.id
                        USING ERRCODE = 'restrict_violation';
                END IF;
                RETURN NEW;
            END $$
            """
        )
        op.execute(
            "CREATE TRIGGER events_insert_only BEFORE UPDATE OR DELETE ON events "
            "FOR EACH ROW EXECUTE FUNCTION events_insert_only()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS events_insert_only ON events")
        op.execute("DROP FUNCTION IF EXISTS events_insert_only()")
    op.drop_table("heartbeats")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("payload_changes")
        batch.drop_column("raw_bytes")
