"""Hotmart REST API wire client (reads only): subscriptions and the sales history.

Wire facts come from ``shared/reference/hotmart-api.md``. The points that shape this code:

* OAuth client credentials: the token is asked for with query parameters and the
  ``Basic`` token Hotmart shows beside the credentials; it is opaque and expires;
* every date is epoch **milliseconds** (UTC); a multi-valued filter repeats its key;
* the subscriptions endpoint defaults ``accession_date`` to *now - 30 days* when it is
  omitted, and the sales history returns only APPROVED and COMPLETE sales unless a
  ``transaction`` or ``transaction_status`` is given (one status per query);
* cursor paging (``max_results`` up to 500, ``page_token`` -> ``page_info.next_page_token``);
* 500 requests a minute per account, announced by the ``RateLimit-*`` headers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

SUBSCRIPTIONS = "/payments/api/v1/subscriptions"
SALES_HISTORY = "/payments/api/v1/sales/history"

SUBSCRIPTION_STATUSES = (
    "ACTIVE",
    "INACTIVE",
    "DELAYED",
    "OVERDUE",
    "STARTED",
    "CANCELLED_BY_CUSTOMER",
    "CANCELLED_BY_SELLER",
    "CANCELLED_BY_ADMIN",
)
# What the sales history returns when no transaction or transaction_status is asked for.
DEFAULT_SALE_STATUSES = ("APPROVED", "COMPLETE")
SALE_STATUSES = (
    "APPROVED",
    "BLOCKED",
    "CANCELLED",
    "CHARGEBACK",
    "COMPLETE",
    "EXPIRED",
    "NO_FUNDS",
    "OVERDUE",
    "PARTIALLY_REFUNDED",
    "PRE_ORDER",
    "PRINTED_BILLET",
    "PROCESSING_TRANSACTION",
    "PROTESTED",
    "REFUNDED",
    "STARTED",
    "UNDER_ANALISYS",  # sic, Hotmart's spelling
    "WAITING_PAYMENT",
)


def epoch_ms(moment: datetime) -> int:
    """A timezone-aware datetime as Hotmart's epoch milliseconds."""
    if moment.tzinfo is None:
        raise ValueError(f"{moment.isoformat()}: a timezone-aware datetime (Hotmart counts in UTC)")
    return int(moment.timestamp() * 1000)


def from_ms(value: int | float) -> datetime:
    """Hotmart's epoch milliseconds as a UTC datetime."""
    return datetime.fromtimestamp(value / 1000, UTC)


class HotmartReader(Protocol):
    """What the sync and the import read from a Hotmart account."""

    def subscriptions(
        self,
        *,
        product_id: str,
        statuses: Sequence[str] = (),
        accession_from: datetime | None = None,
        accession_to: datetime | None = None,
        cancelled_from: datetime | None = None,
        cancelled_to: datetime | None = None,
        subscriber_email: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every subscription of the product matching the filters, every page followed; items
        exactly as Hotmart returns them (``subscriber_code``, ``status``, ``accession_date`` (ms),
        ``date_next_charge`` (ms), ``transaction``, ``plan{id,name}``, ``product{id,name}``,
        ``subscriber{name,email,ucode}``, ...).

        ``accession_from`` None means Hotmart's default, *now - 30 days*: a full scan passes it.
        ``statuses`` () means every status."""
        ...

    def sales(
        self,
        *,
        product_id: str,
        start: datetime,
        end: datetime,
        statuses: Sequence[str] = (),
        buyer_email: str | None = None,
        transaction: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """The product's sales history between ``start`` and ``end``, every page followed.
        ``statuses`` () means Hotmart's default (APPROVED and COMPLETE only, unless ``transaction``
        is given: then every status of that transaction); otherwise every listed status is asked
        for (one query per status) and the results merged."""
        ...

    def check(self) -> str:
        """A token obtained and one page of subscriptions read: a one-line summary.
        Raises :class:`~connectors.errors.WireError` when either fails."""
        ...


class HotmartApi:
    """The real Hotmart API client (implements :class:`HotmartReader`)."""

    @classmethod
    def from_settings(cls, settings: Any, transport: httpx.BaseTransport | None = None) -> HotmartApi:
        """The client the settings describe (``HOTMART_CLIENT_ID``, ``HOTMART_CLIENT_SECRET``,
        ``HOTMART_BASIC``, ``HOTMART_AUTH_URL``, ``HOTMART_API_BASE``)."""
        raise NotImplementedError("the Hotmart API client is being built (issue 26)")

    def subscriptions(
        self,
        *,
        product_id: str,
        statuses: Sequence[str] = (),
        accession_from: datetime | None = None,
        accession_to: datetime | None = None,
        cancelled_from: datetime | None = None,
        cancelled_to: datetime | None = None,
        subscriber_email: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        raise NotImplementedError

    def sales(
        self,
        *,
        product_id: str,
        start: datetime,
        end: datetime,
        statuses: Sequence[str] = (),
        buyer_email: str | None = None,
        transaction: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        raise NotImplementedError

    def check(self) -> str:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError
