"""``catalog.unmanaged_products``: the product ids, per source, the course sells outside the engine.

A webhook for one of them is plainly ignored with its reason instead of needing attention as an
unknown product. The plain list means the default source's (Hotmart's) ids, as it always has; a
mapping lists each source's, as a product's ``sources:`` does::

    unmanaged_products: [4444444]
    unmanaged_products: {hotmart: [4444444], kiwify: ["z9y8x7"], eduzz: [777777]}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from engine.rules.model import Product
from engine.rules.source import line_of
from engine.sources import DEFAULT_SOURCE, SOURCES

KEY = "catalog.unmanaged_products"


def listing(source: str | None) -> str:
    """Where a source's unmanaged ids are written, for messages: the plain list for the default source."""
    return f"{KEY}.{source}" if source in SOURCES and source != DEFAULT_SOURCE.name else KEY


def read_unmanaged(
    file: str, data: Any, products: Mapping[str, Product], error: Callable[[str, int, str], None]
) -> dict[str, frozenset[str]]:
    """Each source's unmanaged ids; an id a product also claims is a rules error, at its line."""
    listed = data["catalog"].get("unmanaged_products") or []
    if isinstance(listed, list):
        per_source = {DEFAULT_SOURCE.name: (listed, ["catalog", "unmanaged_products"])}
    elif isinstance(listed, dict):
        per_source = {name: (ids, ["catalog", "unmanaged_products", name]) for name, ids in listed.items()}
    else:  # the schema refuses it already
        return {}
    unmanaged: dict[str, frozenset[str]] = {}
    for name, (ids, where) in per_source.items():
        source = SOURCES.get(name)
        if source is None or not isinstance(ids, list):  # the schema refuses it already
            continue
        claimed = {product_id: p for p in products.values() for product_id in p.source_ids.get(name, ())}
        for index, product_id in enumerate(ids):
            product = claimed.get(str(product_id))
            if product is not None:
                error(
                    file,
                    line_of(data, [*where, index]),
                    f"{source.title} product {product_id} is listed as unmanaged but product {product.key!r} "
                    f"({product.file}) claims it",
                )
        unmanaged[name] = frozenset(str(i) for i in ids)
    return unmanaged
