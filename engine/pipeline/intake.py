"""Every input becomes an event row first: Hotmart webhooks, the bot, timers, admins."""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from engine.db.models import Event, utcnow
from engine.db.upsert import insert_for
from engine.pipeline.storable import NotJSON, decode, escape_text, storable
from engine.sources import hotmart
from engine.sources.hotmart.hottok import scrub_payload, scrub_raw
from engine.statuses import EventStatus

log = logging.getLogger(__name__)

# Never stored: the shared secret, and credentials of any kind.
_SECRET_HEADERS = {"x-hotmart-hottok", "authorization", "cookie"}
_DEDUPE_KEY_LENGTH = Event.__table__.c.dedupe_key.type.length


@dataclass(frozen=True)
class Stored:
    event_id: int | None
    duplicate: bool
    status: str


def _insert(session: Session | Connection, values: dict[str, Any]) -> int | None:
    """INSERT ... ON CONFLICT (dedupe_key) DO NOTHING; the new id, or None for a duplicate."""
    insert = insert_for(session)
    table = Event.__table__  # Core, not the ORM bulk path: this runs on every webhook
    statement = insert(table).values(**values).on_conflict_do_nothing(index_elements=["dedupe_key"])
    return session.execute(statement.returning(table.c.id)).scalar_one_or_none()


def safe_headers(headers: dict[str, str]) -> dict[str, str]:
    """The headers worth keeping: no credentials, and nothing jsonb refuses (a NUL, escaped)."""
    return {escape_text(k.lower()): escape_text(v) for k, v in headers.items() if k.lower() not in _SECRET_HEADERS}


def store_hotmart(
    session: Session | Connection,
    raw_body: bytes,
    headers: dict[str, str],
    *,
    held: bool,
    decoded: Any = None,
    received_at: datetime | None = None,
) -> Stored:
    """Store a verified webhook body (any JSON value), deduplicated on the envelope id.

    What jsonb cannot hold is stored anyway (see :mod:`engine.pipeline.storable`); a body that
    is not JSON at all is stored as rejected. A body hottok is removed first. Only the envelope
    is read here (the worker parses the whole body): this runs per webhook.
    """
    try:
        body = storable(raw_body, decode(raw_body) if decoded is None else decoded)
    except NotJSON as exc:
        return Stored(store_rejected(session, raw_body, headers, exc.reason), False, EventStatus.REJECTED)
    payload = scrub_payload(body.value)
    raw = scrub_raw(raw_body)
    parsed = hotmart.envelope(payload)
    status = EventStatus.HELD if held else EventStatus.RECEIVED
    key = _dedupe_key(raw, parsed)
    received = received_at or utcnow()
    event_id = _insert(
        session,
        {
            "source": "hotmart",
            "type": (parsed.event_type or None) and parsed.event_type[:60],
            "dedupe_key": key,
            "payload": payload,
            # The bytes as received, only when the payload had to change to be stored.
            "raw_bytes": raw if body.changes else None,
            "payload_changes": body.changes or None,
            "headers": safe_headers(headers),
            "occurred_at": parsed.creation_date,
            "status": status,
            "email": parsed.email,
            "transaction": parsed.transaction,  # bounded by the parser, as for memberships.transaction
            "correlation_id": uuid.uuid4().hex,
            "received_at": received,
            "enqueued_at": None if held else received,  # the caller queues it once committed
        },
    )
    if event_id is None:
        existing = session.scalar(select(Event.status).where(Event.dedupe_key == key))
        return Stored(None, True, existing or "duplicate")
    return Stored(event_id, False, status)


def hotmart_dedupe_key(raw_body: bytes) -> str:
    """The dedupe key a webhook body gets (what a redelivery of it collides with)."""
    body = storable(raw_body, decode(raw_body))
    return _dedupe_key(scrub_raw(raw_body), hotmart.envelope(scrub_payload(body.value)))


def _dedupe_key(raw_body: bytes, parsed: hotmart.Envelope) -> str:
    """The envelope id's key; an id too long for the column is hashed (still one key per id)."""
    key = hotmart.dedupe_key(raw_body, parsed)
    if len(key) <= _DEDUPE_KEY_LENGTH:
        return key
    return "hotmart:sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def store_rejected(session: Session | Connection, raw_body: bytes, headers: dict[str, str], reason: str) -> int | None:
    """Keep a body we could not accept (not JSON) for the audit: the bytes verbatim (hottok
    removed), and as text for reading."""
    raw = scrub_raw(raw_body)
    return _insert(
        session,
        {
            "source": "hotmart",
            "type": None,
            "dedupe_key": "rejected:sha256:" + hashlib.sha256(raw).hexdigest(),
            "payload": None,
            "raw_body": escape_text(raw.decode("utf-8", errors="replace")),
            "raw_bytes": raw,
            "headers": safe_headers(headers),
            "status": EventStatus.REJECTED,
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
    """An event the engine raises itself (DISCORD_LINKED, timers, admin actions); the caller
    queues it once committed."""
    payload = {"event": event_type, "product": product_key, "email": email, "fields": fields or {}}
    now = utcnow()
    event_id = _insert(
        session,
        {
            "source": source,
            "type": event_type,
            "dedupe_key": dedupe_key or f"{source}:{uuid.uuid4().hex}",
            "payload": payload,
            "occurred_at": occurred_at or utcnow(),
            "status": EventStatus.RECEIVED,
            "email": email,
            "student_id": student_id,
            "product_key": product_key,
            "correlation_id": uuid.uuid4().hex,
            "received_at": now,
            "enqueued_at": now,
        },
    )
    return Stored(event_id, event_id is None, EventStatus.RECEIVED)
