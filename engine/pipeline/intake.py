"""Every input becomes an event row first: the platforms' webhooks, the bot, timers, admins."""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, or_, select
from sqlalchemy.orm import Session

from engine.db.models import Event, utcnow
from engine.db.upsert import insert_for
from engine.pipeline.storable import NotJSON, decode, escape_text, storable
from engine.sources import Source
from engine.sources.base import Envelope
from engine.statuses import EventStatus

log = logging.getLogger(__name__)

# Never stored: credentials of any kind (and each source's own secret headers).
_SECRET_HEADERS = frozenset({"authorization", "cookie"})
_DEDUPE_KEY_LENGTH = Event.__table__.c.dedupe_key.type.length


@dataclass(frozen=True)
class Stored:
    event_id: int | None
    duplicate: bool
    status: str
    event_ids: tuple[int, ...] = ()  # every event stored (a body of several products: one each)


def _insert(session: Session | Connection, values: dict[str, Any]) -> int | None:
    """INSERT ... ON CONFLICT DO NOTHING; the new id, or None for a duplicate: the same dedupe key
    (a redelivery) or, for an event the sync stored, the same change key as another of its own."""
    insert = insert_for(session)
    table = Event.__table__  # Core, not the ORM bulk path: this runs on every webhook
    if values.get("origin") is None:
        statement = insert(table).values(**values).on_conflict_do_nothing(index_elements=["dedupe_key"])
    else:
        statement = insert(table).values(**values).on_conflict_do_nothing()  # either unique key
    return session.execute(statement.returning(table.c.id)).scalar_one_or_none()


def _same_change(change: str | None, origin: str | None) -> list[ColumnElement[bool]]:
    """What makes a new event of ``change`` a duplicate: one change is applied once, whether a
    webhook or the sync (``origin`` set) brought it first. Two webhooks of one change are both
    stored, as they were before change keys: their creation dates order them and the later is
    stale, so the log does not depend on which arrived first. (A webhook and a sync event stored at
    the same instant may both be kept: the later is then stale too.)"""
    if change is None:
        return []
    if origin is None:
        return [and_(Event.change_key == change, Event.origin.is_not(None))]
    return [Event.change_key == change]


def safe_headers(headers: dict[str, str], source: Source) -> dict[str, str]:
    """The headers worth keeping: no credentials, and nothing jsonb refuses (a NUL, escaped)."""
    secret = _SECRET_HEADERS | source.secret_headers
    return {escape_text(k.lower()): escape_text(v) for k, v in headers.items() if k.lower() not in secret}


def store_webhook(
    source: Source,
    session: Session | Connection,
    raw_body: bytes,
    headers: dict[str, str],
    *,
    held: bool,
    decoded: Any = None,
    received_at: datetime | None = None,
    origin: str | None = None,
) -> Stored:
    """Store a verified webhook body (any JSON value) of ``source``, deduplicated on its key and
    on the change it makes (``source.change_key``: a change already stored is a duplicate).

    ``origin``: where a body that is not a webhook came from (``engine sync``'s reading of the
    platform's API: "hotmart-api"); it is then stored and processed as the webhook would be.

    What jsonb cannot hold is stored anyway (see :mod:`engine.pipeline.storable`); a body that
    is not JSON at all is stored as rejected. A secret in the body (Hotmart's hottok) is removed
    first. A body that concerns several products (an invoice of two) is stored once per product
    (``Stored.event_ids``). Only the envelope is read here (the worker parses the whole body):
    this runs per webhook.
    """
    try:
        body = storable(raw_body, decode(raw_body) if decoded is None else decoded)
    except NotJSON as exc:
        return Stored(store_rejected(session, raw_body, headers, exc.reason, source), False, EventStatus.REJECTED)
    raw, payload = source.scrub(raw_body, body.value)
    parts = source.split(payload)
    status = EventStatus.HELD if held else EventStatus.RECEIVED
    new_ids: list[int] = []
    existing = None
    received = received_at or utcnow()
    for part in parts:
        changes = body.changes + ([f"one of {len(parts)} products of the body"] if len(parts) > 1 else [])
        parsed = source.envelope(part)
        key = _dedupe_key(source, raw, parsed)
        change = source.change_key(part)
        if same_change := _same_change(change, origin):
            came = session.scalar(select(Event.status).where(*same_change).limit(1))
            if came is not None:  # the change came already, the other way
                existing = existing or came
                continue
        event_id = _insert(
            session,
            {
                "source": source.name,
                "origin": origin,
                "change_key": change,
                "type": (parsed.event_type or None) and parsed.event_type[:60],
                "dedupe_key": key,
                "payload": part,
                # The bytes as received, only when the payload had to change to be stored.
                "raw_bytes": raw if changes else None,
                "payload_changes": changes or None,
                "headers": safe_headers(headers, source),
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
            same = or_(Event.dedupe_key == key, *same_change)
            existing = existing or session.scalar(select(Event.status).where(same).limit(1))
        else:
            new_ids.append(event_id)
    if not new_ids:
        return Stored(None, True, existing or "duplicate")
    return Stored(new_ids[0], False, status, tuple(new_ids))


def webhook_dedupe_key(source: Source, raw_body: bytes) -> str:
    """The dedupe key a webhook body gets (what a redelivery of it collides with); its first
    product's, for a body stored once per product."""
    body = storable(raw_body, decode(raw_body))
    raw, payload = source.scrub(raw_body, body.value)
    return _dedupe_key(source, raw, source.envelope(source.split(payload)[0]))


def webhook_change_key(source: Source, raw_body: bytes) -> str | None:
    """The change key a webhook body gets (what the same change brought another way collides with);
    its first product's, for a body stored once per product."""
    body = storable(raw_body, decode(raw_body))
    _, payload = source.scrub(raw_body, body.value)
    return source.change_key(source.split(payload)[0])


def _dedupe_key(source: Source, raw_body: bytes, parsed: Envelope) -> str:
    """The envelope id's key; an id too long for the column is hashed (still one key per id)."""
    key = source.dedupe_key(raw_body, parsed)
    if len(key) <= _DEDUPE_KEY_LENGTH:
        return key
    return f"{source.name}:sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def store_rejected(
    session: Session | Connection, raw_body: bytes, headers: dict[str, str], reason: str, source: Source
) -> int | None:
    """Keep a body we could not accept (not JSON) for the audit: the bytes verbatim (any secret
    removed), and as text for reading."""
    raw, _ = source.scrub(raw_body, None)
    return _insert(
        session,
        {
            "source": source.name,
            "type": None,
            "dedupe_key": "rejected:sha256:" + hashlib.sha256(raw).hexdigest(),
            "payload": None,
            "raw_body": escape_text(raw.decode("utf-8", errors="replace")),
            "raw_bytes": raw,
            "headers": safe_headers(headers, source),
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
