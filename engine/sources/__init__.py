"""Inbound payment platforms: each verifies and parses its own webhooks (see :mod:`.base`).

The rest of the engine knows a platform only through this registry: :data:`SOURCES` by name,
:func:`is_platform` for "a webhook, not the engine's own event", :func:`detect` for a body of
unknown origin. Adding a platform is a package here and one line in :data:`SOURCES`
(docs/architecture/adding-a-source.md).
"""

from __future__ import annotations

from engine.sources import eduzz, hotmart, kiwify
from engine.sources.base import NOT_JSON, Source
from engine.sources.canonical import CANONICAL_EVENTS
from engine.sources.hotmart import api_items as hotmart_api_items
from engine.sources.phone import normalize_phone

SOURCES: dict[str, Source] = {source.name: source for source in (hotmart.SOURCE, kiwify.SOURCE, eduzz.SOURCE)}

# The platform the engine started with: a product's `hotmart_product_ids`, catalog.unmanaged_products as a plain list
# and a body no other source recognises are its.
DEFAULT_SOURCE: Source = hotmart.SOURCE

# Every event type a webhook can carry once mapped: the rules may name these besides their internal events.
SOURCE_EVENTS: frozenset[str] = CANONICAL_EVENTS

PLATFORMS: tuple[str, ...] = tuple(SOURCES)

# Hotmart's REST API besides its webhooks (``engine import-students --from hotmart``): what its
# subscription and sale items mean in the canonical vocabulary (:mod:`.hotmart.api_items`).
HOTMART_API_ITEMS = hotmart_api_items


def is_platform(source: str | None) -> bool:
    """Whether an event's ``source`` is a payment platform's webhook (not bot, timer or admin)."""
    return source in SOURCES


def source_enabled(settings: object, name: str) -> bool:
    """Whether a source's webhooks are processed (its ``*_ENABLED`` setting); off: held."""
    return bool(getattr(settings, SOURCES[name].enabled_setting))


def source_secret(settings: object, name: str) -> str:
    """A source's shared secret (its token or signing key) from the settings; "" when unset."""
    return getattr(settings, SOURCES[name].secret_setting).get_secret_value()


def detect(body: object) -> Source:
    """The source whose shape a decoded body has; the default source when none claims it."""
    for source in SOURCES.values():
        if source is not DEFAULT_SOURCE and source.recognises(body):
            return source
    return DEFAULT_SOURCE


__all__ = [
    "CANONICAL_EVENTS",
    "DEFAULT_SOURCE",
    "HOTMART_API_ITEMS",
    "NOT_JSON",
    "PLATFORMS",
    "SOURCES",
    "SOURCE_EVENTS",
    "Source",
    "detect",
    "is_platform",
    "normalize_phone",
    "source_enabled",
    "source_secret",
]
