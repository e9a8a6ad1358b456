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

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import httpx

from connectors.errors import Unavailable
from connectors.hotmart_wire import UNAVAILABLE, HotmartWire, ServerError

log = logging.getLogger("connectors.hotmart")

AUTH_URL = "https://api-sec-vlc.hotmart.com/security/oauth/token"
API_BASE = "https://developers.hotmart.com"
SANDBOX_API_BASE = "https://sandbox.hotmart.com"
MAX_PAGE_SIZE = 500
# A window Hotmart still cannot answer at this width is a failure, not narrowed further.
MIN_WINDOW = timedelta(hours=1)

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
    """The real Hotmart API client (implements :class:`HotmartReader`): queries, pages and date
    windows; the token, the pacing and the judging of replies are :class:`HotmartWire`'s."""

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        basic: str,
        *,
        auth_url: str = AUTH_URL,
        api_base: str = API_BASE,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 40.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        page_size: int = MAX_PAGE_SIZE,
        min_window: timedelta = MIN_WINDOW,
        max_rate_wait: float = 900.0,
    ):
        """``transport``: a test double instead of the network; ``sleep``/``clock``: the waits
        (tests pass a fake clock); ``now``: the end of an open date window when it must be split."""
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size {page_size}: 1 to {MAX_PAGE_SIZE}")
        self.wire = HotmartWire(
            client_id,
            client_secret,
            basic,
            auth_url=auth_url,
            api_base=api_base,
            transport=transport,
            timeout=timeout,
            sleep=sleep,
            clock=clock,
            max_rate_wait=max_rate_wait,
        )
        self.api_base = api_base.rstrip("/")
        self._now = now
        self._page_size = page_size
        self._min_window = int(min_window.total_seconds() * 1000)

    @classmethod
    def from_settings(cls, settings: Any, transport: httpx.BaseTransport | None = None, **options: Any) -> HotmartApi:
        """The client the settings describe (``HOTMART_CLIENT_ID``, ``HOTMART_CLIENT_SECRET``,
        ``HOTMART_BASIC``, ``HOTMART_AUTH_URL``, ``HOTMART_API_BASE``); ``options``: the
        constructor's (``timeout``, ``max_rate_wait``, ``sleep``...)."""
        return cls(
            settings.hotmart_client_id,
            settings.hotmart_client_secret.get_secret_value(),
            settings.hotmart_basic.get_secret_value(),
            auth_url=settings.hotmart_auth_url,
            api_base=settings.hotmart_api_base,
            transport=transport,
            **options,
        )

    def close(self) -> None:
        self.wire.close()

    def __enter__(self) -> HotmartApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ reads

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
        params: dict[str, Any] = {"product_id": product_id}
        if statuses:
            params["status"] = list(dict.fromkeys(known(statuses, SUBSCRIPTION_STATUSES, "subscription")))
        for key, moment in (("cancelation_date", cancelled_from), ("end_cancelation_date", cancelled_to)):
            if moment is not None:
                params[key] = epoch_ms(moment)
        if subscriber_email:
            params["subscriber_email"] = subscriber_email
        # Without accession_date Hotmart reads only the last 30 days: an open window is not narrowed.
        window = None if accession_from is None else _Window(epoch_ms(accession_from), _ms(accession_to))
        what = f"reading the subscriptions of product {product_id}"
        yield from self._windowed(
            SUBSCRIPTIONS, params, window, ("accession_date", "end_accession_date"), _subscription_key, what
        )

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
        params: dict[str, Any] = {"product_id": product_id}
        if buyer_email:
            params["buyer_email"] = buyer_email
        if transaction:
            params["transaction"] = transaction
        window = _Window(epoch_ms(start), epoch_ms(end))
        # transaction_status takes one value: one query per status asked for.
        for status in dict.fromkeys(known(statuses, SALE_STATUSES, "sale")) or (None,):
            query = params if status is None else {**params, "transaction_status": status}
            what = f"reading the {status or 'approved and complete'} sales of product {product_id}"
            yield from self._windowed(SALES_HISTORY, query, window, ("start_date", "end_date"), _sale_key, what)

    def check(self) -> str:
        body = self.wire.get(SUBSCRIPTIONS, {"max_results": 1}, "reading one page of subscriptions")
        info = body.get("page_info") if isinstance(body.get("page_info"), dict) else {}
        total = info.get("total_results")
        counted = f"{total} subscription(s) of the last 30 days" if isinstance(total, int) else "subscriptions"
        return f"token obtained and {counted} read at {self.api_base}"

    # ------------------------------------------------------------------ pages and windows

    def _windowed(
        self,
        path: str,
        params: dict[str, Any],
        window: _Window | None,
        keys: tuple[str, str],
        key_of: Callable[[dict[str, Any]], str | None],
        what: str,
    ) -> Iterator[dict[str, Any]]:
        """Every item of the query over ``window``, halving a window Hotmart cannot answer
        (5xx, timeout) down to ``min_window``; an item yielded before a split is not yielded again."""
        seen: set[str] = set()
        pending = [window]
        while pending:
            current = pending.pop()
            query = dict(params)
            if current is not None:
                query[keys[0]] = current.start
                if current.end is not None:
                    query[keys[1]] = current.end
            try:
                for item in self._pages(path, query, what):
                    key = key_of(item)
                    if key is None or key not in seen:
                        if key is not None:
                            seen.add(key)
                        yield item
            except ServerError as exc:
                if current is None or not current.splittable(self._min_window, self._now):
                    raise
                first, second = current.halves(self._now)
                log.info("hotmart: %s; narrowing the window to %s and %s", exc.detail, first, second)
                pending += [second, first]  # the earlier half first

    def _pages(self, path: str, params: dict[str, Any], what: str) -> Iterator[dict[str, Any]]:
        page_token: str | None = None
        tokens: set[str] = set()
        while True:
            query = {**params, "max_results": self._page_size}
            if page_token:
                query["page_token"] = page_token
            body = self.wire.get(path, query, what)
            items = body.get("items")
            if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
                raise Unavailable(UNAVAILABLE, f"{what}: Hotmart answered without a list of items")
            yield from items
            info = body.get("page_info")
            page_token = info.get("next_page_token") if isinstance(info, dict) else None
            if not page_token:
                return
            if page_token in tokens:
                raise Unavailable(UNAVAILABLE, f"{what}: Hotmart handed the same page token twice")
            tokens.add(page_token)


@dataclass(frozen=True)
class _Window:
    """A date window in epoch ms; ``end`` None: up to now."""

    start: int
    end: int | None

    def _end(self, now: Callable[[], datetime]) -> int:
        return self.end if self.end is not None else epoch_ms(now())

    def splittable(self, minimum: int, now: Callable[[], datetime]) -> bool:
        return self._end(now) - self.start > minimum

    def halves(self, now: Callable[[], datetime]) -> tuple[_Window, _Window]:
        end = self._end(now)
        middle = (self.start + end) // 2
        return _Window(self.start, middle), _Window(middle + 1, end)

    def __str__(self) -> str:
        end = "now" if self.end is None else from_ms(self.end).isoformat(timespec="seconds")
        return f"{from_ms(self.start).isoformat(timespec='seconds')}..{end}"


def known(statuses: Sequence[str], valid: Sequence[str], kind: str) -> list[str]:
    """``statuses`` checked against Hotmart's list (a typo would be a 400 mid-run)."""
    if isinstance(statuses, str):
        raise ValueError(f"statuses: a list of {kind} statuses, not the string {statuses!r}")
    unknown = [status for status in statuses if status not in valid]
    if unknown:
        raise ValueError(f"{', '.join(map(repr, unknown))}: not a Hotmart {kind} status ({', '.join(valid)})")
    return list(statuses)


def _ms(moment: datetime | None) -> int | None:
    return None if moment is None else epoch_ms(moment)


def _subscription_key(item: dict[str, Any]) -> str | None:
    code = item.get("subscriber_code")
    return code if isinstance(code, str) else None


def _sale_key(item: dict[str, Any]) -> str | None:
    purchase = item.get("purchase")
    transaction = purchase.get("transaction") if isinstance(purchase, dict) else None
    return transaction if isinstance(transaction, str) else None
