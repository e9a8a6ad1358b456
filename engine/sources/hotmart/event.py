"""A Hotmart v2 body parsed into the canonical event the rules decide on (:class:`HotmartEvent`).

:func:`parse` takes any decoded JSON value and never raises: it reads a fixed set of known
paths with a :class:`~engine.sources.reader.Reader`, so an unusable value becomes
``None`` plus an entry in :attr:`HotmartEvent.problems`. §3 lists where each field lives
per event family.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from engine.sources.base import canonical_fields
from engine.sources.hotmart.identity import buyer_email, creation_date, event_type
from engine.sources.phone import normalize_phone
from engine.sources.reader import Reader, first, kind


@dataclass(frozen=True)
class HotmartEvent:
    id: str | None
    event_type: str | None
    version: str | None
    creation_date: datetime | None
    product_id: str | None
    product_name: str | None
    offer_code: str | None
    email: str | None
    name: str | None
    phone: str | None
    transaction: str | None
    subscriber_code: str | None
    recurrence_number: int | None
    date_next_charge: datetime | None
    purchase_status: str | None
    payment_type: str | None
    plan_id: str | None
    plan_name: str | None
    is_test: bool
    problems: tuple[str, ...]

    ignored = None  # every Hotmart event has a canonical meaning (its names are the vocabulary)

    @property
    def source_event(self) -> str | None:
        """Hotmart's own name: its names are the canonical ones (:mod:`engine.sources.canonical`)."""
        return self.event_type

    def fields(self) -> dict[str, object]:
        """Flat dict the rules engine matches on (datetimes as ISO 8601 strings in UTC)."""
        return canonical_fields(self)


def parse(body: object) -> HotmartEvent:
    """Parse a decoded v2 webhook body (any JSON value). Never raises."""
    r = Reader(body)
    if not isinstance(body, dict):
        r.problems.append("body: expected a JSON object")

    product_id = first(r.code("data.product.id"), r.code("data.subscription.product.id"))
    plan_id, plan_name, plan_offer = _current_plan(r)
    return HotmartEvent(
        id=r.text("id"),
        event_type=event_type(r),
        version=r.text("version"),
        creation_date=creation_date(r),
        product_id=product_id,
        product_name=first(r.text("data.product.name"), r.text("data.subscription.product.name")),
        offer_code=first(
            r.code("data.purchase.offer.code"),
            r.code("data.offer.code"),  # §3.2 cart abandonment
            r.code("data.plan.offer.code"),  # §3.2 charge-date change
            plan_offer,  # §3.2 switch plan: offer.key of the current plan
        ),
        email=buyer_email(r),
        name=first(r.name("data.buyer.name"), r.name("data.subscriber.name"), r.name("data.user.name")),
        phone=read_phone(r),
        transaction=r.code("data.purchase.transaction"),
        # §3: the subscriber code lives in a different place per event family.
        subscriber_code=first(
            r.code("data.subscription.subscriber.code"),
            r.code("data.subscriber.code"),
            r.code("data.subscription.subscriber_code"),
        ),
        recurrence_number=r.integer("data.purchase.recurrence_number"),
        date_next_charge=first(
            r.when("data.purchase.date_next_charge"),
            r.when("data.date_next_charge"),
            # §3: an ISO string on UPDATE_SUBSCRIPTION_CHARGE_DATE, ms on SWITCH_PLAN.
            r.when("data.subscription.date_next_charge"),
        ),
        purchase_status=r.text("data.purchase.status"),
        payment_type=r.text("data.purchase.payment.type"),
        plan_id=first(r.code("data.subscription.plan.id"), r.code("data.plan.id"), plan_id),
        plan_name=first(r.text("data.subscription.plan.name"), r.text("data.plan.name"), plan_name),
        is_test=product_id == "0",  # §9: UI test events carry product id 0
        problems=tuple(r.problems),
    )


def _current_plan(r: Reader) -> tuple[str | None, str | None, str | None]:
    """SWITCH_PLAN (§3.2): id, name and offer key of the ``plans[]`` entry with current=true."""
    plans = r.get("data.plans")
    if plans is None:
        return None, None, None
    if not isinstance(plans, list):
        r.problem("data.plans", f"expected an array, got {kind(plans)}")
        return None, None, None
    for index, plan in enumerate(plans):
        if not isinstance(plan, dict):
            r.problem(f"data.plans[{index}]", f"expected an object, got {kind(plan)}")
        elif plan.get("current") is True:
            sub = Reader(plan)  # read the entry with the same rules, then re-home its problems
            found = sub.code("id"), sub.text("name"), sub.code("offer.key")
            for entry in sub.problems:
                r.problems.append(f"data.plans[{index}].{entry}")
            return found
    r.problem("data.plans", "no entry with current: true")
    return None, None, None


def read_phone(r: Reader) -> str | None:
    """The first plausible phone among the places §8 lists; report implausible ones."""
    country = first(
        r.country("data.purchase.checkout_country.iso"),
        r.country("data.checkout_country.iso"),  # cart abandonment
        r.country("data.buyer.address.country_iso"),
    )
    candidates = [
        # Purchase events: number plus the DDD in a separate field.
        ("data.buyer.checkout_phone", r.area_code("data.buyer.checkout_phone_code")),
        ("data.buyer.phone", None),  # cart abandonment: one string
        # SUBSCRIPTION_CANCELLATION: mobile first, then landline.
        ("data.subscriber.phone.cell", r.area_code("data.subscriber.phone.dddCell")),
        ("data.subscriber.phone.phone", r.area_code("data.subscriber.phone.dddPhone")),
    ]
    found = []
    for path, code in candidates:
        raw = r.code(path)
        if raw is None:
            continue
        phone = normalize_phone(raw, code, country)
        if phone is None:
            r.problem(path, "not a plausible phone number")
        found.append(phone)
    return first(*found)
