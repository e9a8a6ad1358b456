"""An in-memory Hotmart account: subscriptions and sales, for tests and local runs.

FAKE, built from the documented format (``shared/reference/hotmart-api.md``), not from recorded
traffic. Items have the JSON shape Hotmart's ``GET /payments/api/v1/subscriptions`` and
``GET /payments/api/v1/sales/history`` return (dates in epoch milliseconds), and the queries
follow Hotmart's documented filter semantics, its surprising defaults included:

* subscriptions: ``accession_date`` omitted means *now - 30 days*; ``status`` is multi-valued;
  the cancellation window applies only when one of its bounds is given, the other bound then
  defaulting to *now - 30 days* / *now* as documented;
* sales history: without ``transaction`` or ``transaction_status`` only APPROVED and COMPLETE
  sales; ``transaction_status`` takes one value.

Where Hotmart documents no behaviour, the choice made here is marked ``ASSUMPTION``.

:class:`HotmartStore` holds the account (tests add and change what Hotmart knows);
:class:`InMemoryHotmart` reads it as :class:`connectors.hotmart_api.HotmartReader`; the HTTP fake
(``tests/fakes/hotmart_api_app.py``) serves the same store on the wire.
"""

from __future__ import annotations

import copy
import itertools
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.hotmart_api import (
    DEFAULT_SALE_STATUSES,
    SALE_STATUSES,
    SUBSCRIPTION_STATUSES,
    epoch_ms,
)

DEFAULT_WINDOW = timedelta(days=30)  # Hotmart's default for an omitted accession/cancellation date
CANCELLED = ("CANCELLED_BY_CUSTOMER", "CANCELLED_BY_SELLER", "CANCELLED_BY_ADMIN")
PERIOD = timedelta(days=30)  # the fake's plans are monthly
PRODUCER = {"name": "Produtora Exemplo", "ucode": "11111111-2222-3333-4444-555555555555"}


def _product_id(product_id: str | int) -> int | str:
    """Hotmart's JSON carries product ids as numbers."""
    text = str(product_id)
    return int(text) if text.isdigit() else text


def _ucode(email: str) -> str:
    """A user's ucode is per person: the same buyer gets the same one on every product."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"hotmart-fake:{email.lower()}"))


@dataclass
class _Subscription:
    item: dict[str, Any]
    cancelled_at: int | None = None  # ms; Hotmart filters on it but shows no such field (ASSUMPTION)
    recurrences: int = 1  # payments so far (the sales' recurrency_number)


class HotmartStore:
    """What one Hotmart account knows. Thread-safe: the HTTP fake reads it from its server thread.

    Every getter returns copies: change the account through the ``add_*``/``set_*`` helpers."""

    def __init__(self, now: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.now = now
        self._lock = threading.Lock()
        self._subscriptions: dict[str, _Subscription] = {}  # by subscriber_code, in creation order
        self._sales: dict[str, dict[str, Any]] = {}  # by transaction, in creation order
        self._numbers = itertools.count(1)

    # ------------------------------------------------------------ ids

    def new_transaction(self) -> str:
        return f"HP{10_000_000_000_000 + next(self._numbers)}"

    def new_subscriber_code(self) -> str:
        number = next(self._numbers)
        alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
        code = ""
        for _ in range(8):
            number, digit = divmod(number, 36)
            code = alphabet[digit] + code
        return code

    # ------------------------------------------------------------ sales

    def add_sale(
        self,
        product_id: str | int,
        email: str,
        *,
        status: str = "APPROVED",
        transaction: str | None = None,
        approved: datetime | None = None,
        ordered: datetime | None = None,
        name: str | None = None,
        product_name: str | None = None,
        recurrency_number: int | None = None,
        price: float = 297.0,
    ) -> dict[str, Any]:
        """A sale as ``/sales/history`` lists it; ``approved`` defaults to now, ``ordered`` to
        ``approved``. Returns a copy of the item."""
        if status not in SALE_STATUSES:
            raise ValueError(f"{status!r} is not a Hotmart sale status")
        approved = approved or self.now()
        ordered = ordered or approved
        transaction = transaction or self.new_transaction()
        item = {
            "product": {"id": _product_id(product_id), "name": product_name or f"Produto {product_id}"},
            "buyer": {"name": name or email.split("@")[0].title(), "email": email, "ucode": _ucode(email)},
            "producer": dict(PRODUCER),
            "purchase": {
                "transaction": transaction,
                "order_date": epoch_ms(ordered),
                "approved_date": epoch_ms(approved),
                "status": status,
                "recurrency_number": recurrency_number,
                "is_subscription": recurrency_number is not None,
                "commission_as": "PRODUCER",
                "price": {"value": price, "currency_code": "BRL"},
                "payment": {"method": "CREDIT_CARD", "installments_number": 1, "type": "CREDIT_CARD"},
                "tracking": {"source": "HOTMART", "source_sck": None, "external_code": None},
                "warranty_expire_date": epoch_ms(approved + timedelta(days=7)),
                "offer": {"code": "k2pasun0", "payment_mode": "SUBSCRIPTION" if recurrency_number else "UNIQUE"},
            },
        }
        with self._lock:
            if transaction in self._sales:
                raise ValueError(f"transaction {transaction} exists")
            self._sales[transaction] = item
            return copy.deepcopy(item)

    def set_sale_status(self, transaction: str, status: str) -> dict[str, Any]:
        """A sale's new status (a refund, a chargeback...). Returns a copy of the item."""
        if status not in SALE_STATUSES:
            raise ValueError(f"{status!r} is not a Hotmart sale status")
        with self._lock:
            item = self._sales[transaction]
            item["purchase"]["status"] = status
            return copy.deepcopy(item)

    def sale(self, transaction: str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._sales[transaction])

    # ------------------------------------------------------------ subscriptions

    def add_subscription(
        self,
        product_id: str | int,
        email: str,
        *,
        status: str = "ACTIVE",
        subscriber_code: str | None = None,
        accession: datetime | None = None,
        date_next_charge: datetime | None = None,
        transaction: str | None = None,
        name: str | None = None,
        plan_id: int = 1001,
        plan_name: str = "Plano mensal",
        product_name: str | None = None,
        price: float = 97.0,
        sale: bool = True,
    ) -> dict[str, Any]:
        """A subscription as ``/subscriptions`` lists it (``accession`` defaults to now,
        ``date_next_charge`` to a period later); with ``sale`` its first payment is in the sales
        history too (approved at ``accession``, recurrency 1). Returns a copy of the item."""
        if status not in SUBSCRIPTION_STATUSES:
            raise ValueError(f"{status!r} is not a Hotmart subscription status")
        accession = accession or self.now()
        date_next_charge = date_next_charge or accession + PERIOD
        transaction = transaction or self.new_transaction()
        code = subscriber_code or self.new_subscriber_code()
        subscriber_name = name or email.split("@")[0].title()
        item = {
            "subscriber_code": code,
            "subscription_id": next(self._numbers),
            "status": status,
            "accession_date": epoch_ms(accession),
            "end_accession_date": None,
            "request_date": epoch_ms(accession),
            "date_next_charge": epoch_ms(date_next_charge),
            "trial": False,
            "transaction": transaction,
            "plan": {"name": plan_name, "id": plan_id, "recurrency_period": 30, "max_charge_cycles": None},
            "product": {
                "id": _product_id(product_id),
                "name": product_name or f"Produto {product_id}",
                "ucode": str(uuid.uuid5(uuid.NAMESPACE_URL, f"hotmart-fake-product:{product_id}")),
            },
            "price": {"value": price, "currency_code": "BRL"},
            "subscriber": {"name": subscriber_name, "email": email, "ucode": _ucode(email)},
        }
        with self._lock:
            if code in self._subscriptions:
                raise ValueError(f"subscriber code {code} exists")
            self._subscriptions[code] = _Subscription(item, epoch_ms(self.now()) if status in CANCELLED else None)
        if sale:
            self.add_sale(
                product_id,
                email,
                transaction=transaction,
                approved=accession,
                name=subscriber_name,
                product_name=product_name,
                recurrency_number=1,
                price=price,
            )
        return copy.deepcopy(item)

    def set_subscription_status(
        self,
        subscriber_code: str,
        status: str,
        *,
        date_next_charge: datetime | None = None,
        at: datetime | None = None,
    ) -> dict[str, Any]:
        """A subscription's new status; a cancellation is dated ``at`` (default now), and its
        ``date_next_charge`` (the last day of access) stays unless given. Returns a copy."""
        if status not in SUBSCRIPTION_STATUSES:
            raise ValueError(f"{status!r} is not a Hotmart subscription status")
        with self._lock:
            record = self._subscriptions[subscriber_code]
            record.item["status"] = status
            if date_next_charge is not None:
                record.item["date_next_charge"] = epoch_ms(date_next_charge)
            record.cancelled_at = epoch_ms(at or self.now()) if status in CANCELLED else None
            return copy.deepcopy(record.item)

    def renew_subscription(
        self, subscriber_code: str, *, approved: datetime | None = None, transaction: str | None = None
    ) -> dict[str, Any]:
        """The next recurrence paid: a new approved sale (recurrency + 1), the subscription ACTIVE
        and charged again a period later. Returns a copy of the sale."""
        with self._lock:
            record = self._subscriptions[subscriber_code]
            record.recurrences += 1
            item, recurrence = copy.deepcopy(record.item), record.recurrences
        approved = approved or self.now()
        sale = self.add_sale(
            item["product"]["id"],
            item["subscriber"]["email"],
            transaction=transaction,
            approved=approved,
            name=item["subscriber"]["name"],
            product_name=item["product"]["name"],
            recurrency_number=recurrence,
            price=item["price"]["value"],
        )
        self.set_subscription_status(subscriber_code, "ACTIVE", date_next_charge=approved + PERIOD)
        return sale

    def subscription(self, subscriber_code: str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._subscriptions[subscriber_code].item)

    def all_subscriptions(self) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(record.item) for record in self._subscriptions.values()]

    def all_sales(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(list(self._sales.values()))

    # ------------------------------------------------------------ queries (Hotmart's semantics)

    def find_subscriptions(
        self,
        *,
        product_id: str | None = None,
        statuses: Sequence[str] = (),
        accession_from: int | None = None,
        accession_to: int | None = None,
        cancelled_from: int | None = None,
        cancelled_to: int | None = None,
        subscriber_email: str | None = None,
        subscriber_code: str | None = None,
        transaction: str | None = None,
    ) -> list[dict[str, Any]]:
        """``/subscriptions`` filtered as Hotmart documents it (dates in ms)."""
        now = self.now()
        if accession_from is None:
            accession_from = epoch_ms(now - DEFAULT_WINDOW)
        cancel_window = cancelled_from is not None or cancelled_to is not None
        if cancel_window:
            cancelled_from = epoch_ms(now - DEFAULT_WINDOW) if cancelled_from is None else cancelled_from
            cancelled_to = epoch_ms(now) if cancelled_to is None else cancelled_to
        found = []
        with self._lock:
            for record in self._subscriptions.values():
                item = record.item
                if product_id is not None and str(item["product"]["id"]) != str(product_id):
                    continue
                if statuses and item["status"] not in statuses:
                    continue
                if item["accession_date"] < accession_from:
                    continue
                if accession_to is not None and item["accession_date"] > accession_to:
                    continue
                if cancel_window and (
                    record.cancelled_at is None or not cancelled_from <= record.cancelled_at <= cancelled_to
                ):
                    continue
                if subscriber_email is not None and item["subscriber"]["email"].lower() != subscriber_email.lower():
                    continue
                if subscriber_code is not None and item["subscriber_code"] != subscriber_code:
                    continue
                if transaction is not None and item["transaction"] != transaction:
                    continue
                found.append(copy.deepcopy(item))
        return found

    def find_sales(
        self,
        *,
        product_id: str | None = None,
        start: int | None = None,
        end: int | None = None,
        status: str | None = None,
        buyer_email: str | None = None,
        transaction: str | None = None,
    ) -> list[dict[str, Any]]:
        """``/sales/history`` filtered as Hotmart documents it: no ``transaction`` nor ``status``
        -> APPROVED and COMPLETE only. ASSUMPTION: the window applies to the order date."""
        if status is not None:
            allowed: Sequence[str] | None = (status,)
        elif transaction is not None:
            allowed = None
        else:
            allowed = DEFAULT_SALE_STATUSES
        found = []
        with self._lock:
            for item in self._sales.values():
                purchase = item["purchase"]
                if product_id is not None and str(item["product"]["id"]) != str(product_id):
                    continue
                if allowed is not None and purchase["status"] not in allowed:
                    continue
                if start is not None and purchase["order_date"] < start:
                    continue
                if end is not None and purchase["order_date"] > end:
                    continue
                if buyer_email is not None and item["buyer"]["email"].lower() != buyer_email.lower():
                    continue
                if transaction is not None and purchase["transaction"] != transaction:
                    continue
                found.append(copy.deepcopy(item))
        return found


class InMemoryHotmart:
    """:class:`~connectors.hotmart_api.HotmartReader` over a :class:`HotmartStore`, with no wire:
    the same filters and defaults as the real API. ``queries`` records every query made (tests
    assert, e.g., that a full scan passed ``accession_from``)."""

    def __init__(self, store: HotmartStore):
        self.store = store
        self.queries: list[tuple[str, dict[str, Any]]] = []

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
        query = {
            "product_id": product_id,
            "statuses": tuple(statuses),
            "accession_from": accession_from,
            "accession_to": accession_to,
            "cancelled_from": cancelled_from,
            "cancelled_to": cancelled_to,
            "subscriber_email": subscriber_email,
        }
        self.queries.append(("subscriptions", query))
        for status in statuses:
            if status not in SUBSCRIPTION_STATUSES:
                raise ValueError(f"{status!r} is not a Hotmart subscription status")
        yield from self.store.find_subscriptions(
            product_id=product_id,
            statuses=tuple(statuses),
            accession_from=_ms(accession_from),
            accession_to=_ms(accession_to),
            cancelled_from=_ms(cancelled_from),
            cancelled_to=_ms(cancelled_to),
            subscriber_email=subscriber_email,
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
        query = {
            "product_id": product_id,
            "start": start,
            "end": end,
            "statuses": tuple(statuses),
            "buyer_email": buyer_email,
            "transaction": transaction,
        }
        self.queries.append(("sales", query))
        for status in statuses:
            if status not in SALE_STATUSES:
                raise ValueError(f"{status!r} is not a Hotmart sale status")
        for status in dict.fromkeys(statuses) or (None,):
            yield from self.store.find_sales(
                product_id=product_id,
                start=epoch_ms(start),
                end=epoch_ms(end),
                status=status,
                buyer_email=buyer_email,
                transaction=transaction,
            )

    def check(self) -> str:
        return f"in-memory Hotmart account: {len(self.store.all_subscriptions())} subscription(s)"


def _ms(moment: datetime | None) -> int | None:
    return None if moment is None else epoch_ms(moment)
