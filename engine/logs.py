"""Logging: text for a developer, one JSON object per line for production (``LOG_FORMAT``).

Inside event processing every line carries the event it is about: ``event_id``,
``correlation_id``, ``student`` (a hash of the e-mail, never the address), ``product`` and
``step``, bound with :func:`log_context`. Uvicorn's access log goes through the same handler.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

CONTEXT_FIELDS = ("event_id", "correlation_id", "student", "product", "step")
_context: ContextVar[dict[str, Any]] = ContextVar("engine_log_context", default={})  # noqa: B039 - never mutated


def student_ref(email: str | None) -> str | None:
    """What logs say instead of an e-mail: a short hash (``printf %s EMAIL | sha256sum | cut -c1-12``)."""
    if not email:
        return None
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()[:12]


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add fields to every log line of this thread (or task) until the block ends.

    ``student`` takes the e-mail and logs its hash.
    """
    if "student" in fields:
        fields["student"] = student_ref(fields["student"])
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the event's context, the exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in CONTEXT_FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The developer's format, with the event's context at the end of the line."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        context = " ".join(f"{key}={getattr(record, key)}" for key in CONTEXT_FIELDS if hasattr(record, key))
        return f"{text} [{context}]" if context else text


def configure_logging(log_format: str, level: int = logging.INFO) -> None:
    """Route every logger (uvicorn's, huey's, the engine's) through one stderr handler."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(_ContextFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Their own handlers (if any) would print a second, differently formatted line. Propagation
    # is left alone: uvicorn turns it off for the access log unless --access-log.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "huey"):
        logging.getLogger(name).handlers.clear()
    logging.getLogger("transitions").setLevel(logging.WARNING)  # it logs every callback at INFO
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per Discord/ManyChat request
    # Seven "setup plugin" lines per migration run; "Running upgrade" lines stay.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
