"""Every input becomes an event row first: Hotmart webhooks, the bot, timers, admins."""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from engine.db.models import Event, utcnow
from engine.sources import hotmart

log = logging.getLogger(__name__)

# Never stored: the shared secret, and credentials of any kind.
_SECRET_HEADERS = {"x-hotmart-hottok", "authorization", "cookie"}


@dataclass(frozen=True)
class Stored:
    event_id: int | None
    duplicate: bool
    status: str


def _insert(session: Session | Connection, values: dict[str, Any]) -> int | None:
    """INSERT ... ON CONFLICT (dedupe_key) DO NOTHING; the new id, or None for a duplicate."""
    dialect = (session.dialect if isinstance(session, Connection) else session.get_bind().dialect).name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    table = Event.__table__  # Core, not the ORM bulk path: this runs on every webhook
    statement = insert(table).values(**values).on_conflict_do_nothing(index_elements=["dedupe_key"])
    return session.execute(statement.returning(table.c.id)).scalar_one_or_none()


def safe_headers(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items() if k.lower() not in _SECRET_HEADERS}


def store_hotmart(
    session: Session | Connection, raw_body: bytes, headers: dict[str, str], *, held: bool, decoded: Any = None
) -> Stored:
    """Store a verified webhook body (any JSON value), deduplicated on the envelope id.

    Only the envelope is read here (the worker parses the whole body): this runs per webhook.
    """
    body = json.loads(raw_body) if decoded is None else decoded
    parsed = hotmart.envelope(body)
    key = hotmart.dedupe_key(raw_body, parsed)
    status = "held" if held else "received"
    event_id = _insert(
        session,
        {
            "source": "hotmart",
            "type": (parsed.event_type or None) and parsed.event_type[:60],
            "dedupe_key": key,
            "payload": body,
            "headers": safe_headers(headers),
            "occurred_at": parsed.creation_date,
            "status": status,
            "email": parsed.email,
            "transaction": parsed.transaction[:64] if parsed.transaction else None,
            "correlation_id": uuid.uuid4().hex,
            "received_at": utcnow(),
        },
    )
    if event_id is None:
        existing = session.scalar(select(Event.status).where(Event.dedupe_key == key))
        return Stored(None, True, existing or "duplicate")
    return Stored(event_id, False, status)


def store_rejected(session: Session, raw_body: bytes, headers: dict[str, str], reason: str) -> int | None:
    """Keep a body we could not accept (not JSON) for the audit."""
    import hashlib

    text = raw_body.decode("utf-8", errors="replace")
    return _insert(
        session,
        {
            "source": "hotmart",
            "type": None,
            "dedupe_key": "rejected:sha256:" + hashlib.sha256(raw_body).hexdigest(),
            "payload": None,
            "raw_body": text,
            "headers": safe_headers(headers),
            "status": "rejected",
            "reason": reason,
            "correlation_id": uuid.uuid4().hex,
            "received_at": utcnow(),
        },
    )


def store_internal(
    session: Session,
    event_type: str,
    *,
    email: str,
    student_id: int | None,
    product_key: str | None = None,
    fields: dict[str, Any] | None = None,
    source: str,
    dedupe_key: str | None = None,
    occurred_at: datetime | None = None,
) -> Stored:
    """An event the engine raises itself (DISCORD_LINKED, timers, admin actions)."""
    payload = {"event": event_type, "product": product_key, "email": email, "fields": fields or {}}
    event_id = _insert(
        session,
        {
            "source": source,
            "type": event_type,
            "dedupe_key": dedupe_key or f"{source}:{uuid.uuid4().hex}",
            "payload": payload,
            "occurred_at": occurred_at or utcnow(),
            "status": "received",
            "email": email,
            "student_id": student_id,
            "product_key": product_key,
            "correlation_id": uuid.uuid4().hex,
            "received_at": utcnow(),
        },
    )
    return Stored(event_id, event_id is None, "received")
