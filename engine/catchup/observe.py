"""Reading the platform: every subscription and the sales since a point, of every product the
rules claim there, as the changes they show (:class:`engine.sources.base.ApiChange`).

The reader is the platform's API client (``connectors/``: it pages, paces itself by the rate
limit and waits out 429s); the source reads its items (``engine.sources``: only that package
knows a platform's shapes).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from connectors.hotmart_api import HotmartReader
from engine.reconcile.world import Progress, no_progress
from engine.sources.base import ApiChange, ApiSubscription, PlatformApi

_EARLIEST = datetime.min.replace(tzinfo=UTC)


@dataclass
class Observed:
    changes: list[ApiChange] = field(default_factory=list)
    # (e-mail, product id) -> the buyer's subscription of the product (the newest, if several).
    subscriptions: dict[tuple[str, str], ApiSubscription] = field(default_factory=dict)
    read: dict[str, dict[str, int]] = field(default_factory=dict)  # product id -> subscriptions, sales
    unreadable: Counter[str] = field(default_factory=Counter)  # items that could not be read, by kind


def observe(
    api: PlatformApi,
    reader: HotmartReader,
    product_ids: Iterable[str],
    *,
    since: datetime,
    until: datetime,
    progress: Progress = no_progress,
) -> Observed:
    """Every subscription (any status, accessions from ``api.subscriptions_from``) and the sales of
    ``api.sale_statuses`` ordered since ``since`` (the late statuses from further back), per product."""
    seen = Observed()
    product_ids = sorted(set(product_ids))
    with progress(f"reading {len(product_ids)} product(s)", len(product_ids)) as step:
        for product_id in product_ids:
            _read_product(api, reader, product_id, since, until, seen)
            step(1)
    return seen


def _read_product(
    api: PlatformApi, reader: HotmartReader, product_id: str, since: datetime, until: datetime, seen: Observed
) -> None:
    subscriptions = 0
    for item in reader.subscriptions(product_id=product_id, accession_from=api.subscriptions_from, accession_to=until):
        subscriptions += 1
        subscription = api.subscription(item)
        if subscription is None:
            seen.unreadable["subscription"] += 1
            continue
        key = (subscription.email, subscription.product_id)
        current = seen.subscriptions.get(key)
        if current is None or _newer(subscription, current):
            seen.subscriptions[key] = subscription
        cancelled = api.cancellation(subscription)
        if cancelled is not None:
            seen.changes.append(cancelled)
    late_since = since - timedelta(days=api.late_lookback_days)
    sales: dict[str, ApiChange] = {}  # by transaction: a sale whose status changed between two queries, once
    count = 0
    for statuses, start in ((api.sale_statuses, since), (api.late_statuses, late_since)):
        for item in reader.sales(product_id=product_id, start=start, end=until, statuses=statuses):
            count += 1
            change = api.sale_change(item, seen.subscriptions)
            if change is None:
                seen.unreadable["sale"] += 1
                continue
            sales[change.transaction or ""] = change
    seen.changes.extend(sales.values())
    seen.read[product_id] = {"subscriptions": subscriptions, "sales": count}


def _newer(candidate: ApiSubscription, current: ApiSubscription) -> bool:
    """A buyer's newer subscription of a product (cancelled, then subscribed again) is the one that
    counts: a running one before a cancelled one, else the later accession."""
    if candidate.ended != current.ended:
        return not candidate.ended
    return (candidate.started or _EARLIEST) > (current.started or _EARLIEST)
