"""Inbound payment platforms: each parses and verifies its own webhooks (see :mod:`.base`)."""

from __future__ import annotations

from engine.sources import hotmart
from engine.sources.base import Source

SOURCES: dict[str, Source] = {hotmart.SOURCE.name: hotmart.SOURCE}

# Every event type a source can send: the rules may name these besides their internal events.
SOURCE_EVENTS: frozenset[str] = frozenset().union(*(source.events for source in SOURCES.values()))

__all__ = ["SOURCES", "SOURCE_EVENTS", "Source"]
