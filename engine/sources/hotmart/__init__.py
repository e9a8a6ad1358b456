"""Typed, tolerant parser of Hotmart v2 webhook payloads.

Section numbers (§) refer to ``shared/reference/hotmart.md``.

:func:`parse` takes any decoded JSON value and never raises. It reads only a fixed set of
known paths (no recursion), so odd input costs nothing. A value that is present but
unusable (wrong type, unparsable date, implausible phone ...) becomes ``None`` plus a
human-readable entry in :attr:`HotmartEvent.problems`; a missing optional field (absent,
``null`` or an empty string) is not a problem, since Hotmart omits fields it has no value
for (§3.1).

Every value is bounded here, once, so every column it reaches later takes it the same way at
every write: identifiers (transaction, subscriber code, product/offer/plan ids) longer than
:data:`MAX_CODE_LENGTH` and e-mails longer than :data:`MAX_EMAIL_LENGTH` are unusable (a problem),
names are cut to :data:`MAX_NAME_LENGTH`, integers outside :data:`MAX_INTEGER` are unusable.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

__all__ = [
    "HOTMART_EVENTS",
    "HotmartEvent",
    "dedupe_key",
    "normalize_phone",
    "parse",
    "verify_hottok",
]

# §4: every v2 event name. Others (SUBSCRIPTION_RENEWED, CART_ABANDONMENT ...) do not exist.
HOTMART_EVENTS: frozenset[str] = frozenset(
    {
        "PURCHASE_APPROVED",
        "PURCHASE_COMPLETE",
        "PURCHASE_BILLET_PRINTED",
        "PURCHASE_DELAYED",
        "PURCHASE_EXPIRED",
        "PURCHASE_CANCELED",
        "PURCHASE_PROTEST",
        "PURCHASE_REFUNDED",
        "PURCHASE_CHARGEBACK",
        "PURCHASE_OUT_OF_SHOPPING_CART",
        "SUBSCRIPTION_CANCELLATION",
        "SWITCH_PLAN",
        "UPDATE_SUBSCRIPTION_CHARGE_DATE",
        "CLUB_FIRST_ACCESS",
        "CLUB_MODULE_COMPLETED",
        "ORDER_FULFILLMENT",
    }
)

# The widest value each kind of field may carry (the database columns are at least this wide).
MAX_CODE_LENGTH = 64
MAX_EMAIL_LENGTH = 320
MAX_NAME_LENGTH = 200
MAX_INTEGER = 1_000_000  # recurrence_number: a subscription's charge count

_T = TypeVar("_T")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# ASCII digits only: str.isdigit() accepts "²" (int() then fails), \d accepts "١".
_DIGITS = re.compile(r"[0-9]+")
_NUMERIC = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?")
# What a typed phone number may contain besides digits. Anything else (letters ...) makes
# the number implausible rather than being silently stripped away.
_PHONE_CHARS = re.compile(r"[0-9\s+().-]+")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")
_COUNTRY_ISO = re.compile(r"[A-Za-z]{2}")


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

    def fields(self) -> dict[str, object]:
        """Flat dict the rules engine matches on (datetimes as ISO 8601 strings in UTC)."""
        return {
            "event_type": self.event_type,
            "product_id": self.product_id,
            "offer_code": self.offer_code,
            "email": self.email,
            "name": self.name,
            "phone": self.phone,
            "transaction": self.transaction,
            "subscriber_code": self.subscriber_code,
            "recurrence_number": self.recurrence_number,
            "date_next_charge": _iso(self.date_next_charge),
            "creation_date": _iso(self.creation_date),
            "purchase_status": self.purchase_status,
            "payment_type": self.payment_type,
            "plan_id": self.plan_id,
            "plan_name": self.plan_name,
            "is_test": self.is_test,
        }


@dataclass(frozen=True)
class Envelope:
    """The few fields the webhook stores in columns, read without a full parse (hot path)."""

    id: str | None
    event_type: str | None
    creation_date: datetime | None
    email: str | None
    transaction: str | None


def envelope(body: object) -> Envelope:
    """Read the envelope fields of a decoded body (any JSON value). Never raises."""
    r = _Reader(body)
    return Envelope(r.text("id"), _event_type(r), _creation_date(r), _email(r), r.code("data.purchase.transaction"))


def _event_type(r: _Reader) -> str | None:
    event_type = r.text("event")
    return event_type.upper() if event_type else None


def _creation_date(r: _Reader) -> datetime | None:
    # §3: CLUB_FIRST_ACCESS spells it creationDate.
    return _first(r.when("creation_date"), r.when("creationDate"))


def _email(r: _Reader) -> str | None:
    return _first(
        r.email("data.buyer.email"),
        r.email("data.subscriber.email"),
        r.email("data.user.email"),
        r.email("data.subscription.user.email"),
    )


def parse(body: object) -> HotmartEvent:
    """Parse a decoded v2 webhook body (any JSON value). Never raises."""
    r = _Reader(body)
    if not isinstance(body, dict):
        r.problems.append("body: expected a JSON object")

    product_id = _first(r.code("data.product.id"), r.code("data.subscription.product.id"))
    plan_id, plan_name, plan_offer = _current_plan(r)
    return HotmartEvent(
        id=r.text("id"),
        event_type=_event_type(r),
        version=r.text("version"),
        creation_date=_creation_date(r),
        product_id=product_id,
        product_name=_first(r.text("data.product.name"), r.text("data.subscription.product.name")),
        offer_code=_first(
            r.code("data.purchase.offer.code"),
            r.code("data.offer.code"),  # §3.2 cart abandonment
            r.code("data.plan.offer.code"),  # §3.2 charge-date change
            plan_offer,  # §3.2 switch plan: offer.key of the current plan
        ),
        email=_email(r),
        name=_first(r.name("data.buyer.name"), r.name("data.subscriber.name"), r.name("data.user.name")),
        phone=_phone(r),
        transaction=r.code("data.purchase.transaction"),
        # §3: the subscriber code lives in a different place per event family.
        subscriber_code=_first(
            r.code("data.subscription.subscriber.code"),
            r.code("data.subscriber.code"),
            r.code("data.subscription.subscriber_code"),
        ),
        recurrence_number=r.integer("data.purchase.recurrence_number"),
        date_next_charge=_first(
            r.when("data.purchase.date_next_charge"),
            r.when("data.date_next_charge"),
            # §3: an ISO string on UPDATE_SUBSCRIPTION_CHARGE_DATE, ms on SWITCH_PLAN.
            r.when("data.subscription.date_next_charge"),
        ),
        purchase_status=r.text("data.purchase.status"),
        payment_type=r.text("data.purchase.payment.type"),
        plan_id=_first(r.code("data.subscription.plan.id"), r.code("data.plan.id"), plan_id),
        plan_name=_first(r.text("data.subscription.plan.name"), r.text("data.plan.name"), plan_name),
        is_test=product_id == "0",  # §9: UI test events carry product id 0
        problems=tuple(r.problems),
    )


def dedupe_key(raw_body: bytes, event: HotmartEvent | Envelope) -> str:
    """'hotmart:<envelope id>' (§3: the id is unique per event), else a hash of the body."""
    if isinstance(event.id, str) and event.id:
        return f"hotmart:{event.id}"
    return "sha256:" + hashlib.sha256(raw_body).hexdigest()


def verify_hottok(header_value: str | None, body: object, expected: str) -> bool:
    """Check the shared secret (§2): the X-HOTMART-HOTTOK header, else the body's hottok."""
    if not expected:
        return False
    got = header_value
    # §2: the body field appears only on some payloads, so it is only a fallback.
    if not got and isinstance(body, dict) and isinstance(body.get("hottok"), str):
        got = body["hottok"]
    if not isinstance(got, str) or not got:
        return False
    # surrogatepass: a hostile "\ud800" compares unequal instead of raising.
    return hmac.compare_digest(got.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass"))


def normalize_phone(number: str | None, code: str | None = None, country_iso: str | None = None) -> str | None:
    """Best-effort E.164 ("+5511999990001") following §8; None when implausible.

    ``code`` is Hotmart's ``checkout_phone_code`` (the Brazilian DDD), ``country_iso`` the
    buyer's country (Brazil when unknown).
    """
    if not isinstance(number, str) or not _PHONE_CHARS.fullmatch(number.strip()):
        return None
    digits = re.sub(r"[^0-9]", "", number)
    country = country_iso.strip().upper() if isinstance(country_iso, str) else ""
    # §8 rule 2: a foreign buyer's checkout_phone already carries the DDI; so does "+...".
    has_ddi = number.strip().startswith("+") or country not in ("", "BR")
    if has_ddi:
        if not digits.startswith("55"):
            return "+" + digits if 8 <= len(digits) <= 15 else None
        national = digits[2:]
    else:
        ddd = ""
        if isinstance(code, str) and _PHONE_CHARS.fullmatch(code.strip()):
            ddd = re.sub(r"[^0-9]", "", code)
        # §8 rule 3: an 8-9 digit number lacks the DDD (it cannot already contain it).
        if len(ddd) == 2 and len(digits) in (8, 9):
            digits = ddd + digits
        if len(digits) in (10, 11):
            national = digits
        elif len(digits) in (12, 13) and digits.startswith("55"):
            national = digits[2:]
        else:
            return None
    return "+55" + national if _plausible_brazilian(national) else None


# --- private helpers -------------------------------------------------------------------


def _plausible_brazilian(national: str) -> bool:
    """DDD (two digits, no zero) + 8-digit landline or 9-digit mobile starting with 9 (§8)."""
    if len(national) not in (10, 11) or "0" in national[:2]:
        return False
    return len(national) == 10 or national[2] == "9"


def _phone(r: _Reader) -> str | None:
    """The first plausible phone among the places §8 lists; report implausible ones."""
    country = _first(
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
    return _first(*found)


def _first(*values: _T | None) -> _T | None:
    """The first value that is not None (all candidates are read, so all problems show)."""
    return next((v for v in values if v is not None), None)


def _current_plan(r: _Reader) -> tuple[str | None, str | None, str | None]:
    """SWITCH_PLAN (§3.2): id, name and offer key of the ``plans[]`` entry with current=true."""
    plans = r.get("data.plans")
    if plans is None:
        return None, None, None
    if not isinstance(plans, list):
        r.problem("data.plans", f"expected an array, got {_kind(plans)}")
        return None, None, None
    for index, plan in enumerate(plans):
        if not isinstance(plan, dict):
            r.problem(f"data.plans[{index}]", f"expected an object, got {_kind(plan)}")
        elif plan.get("current") is True:
            sub = _Reader(plan)  # read the entry with the same rules, then re-home its problems
            found = sub.code("id"), sub.text("name"), sub.code("offer.key")
            for entry in sub.problems:
                r.problems.append(f"data.plans[{index}].{entry}")
            return found
    r.problem("data.plans", "no entry with current: true")
    return None, None, None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _kind(value: object) -> str:
    """The JSON name of a decoded value's type, for problem messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _from_ms(ms: float) -> datetime | None:
    try:
        return _EPOCH + timedelta(milliseconds=ms)
    except (OverflowError, ValueError):  # out of datetime's range, NaN, infinity
        return None


class _Reader:
    """Reads dotted paths out of a body, collecting problems instead of raising."""

    def __init__(self, body: object) -> None:
        self.body = body
        self.problems: list[str] = []

    def problem(self, path: str, message: str) -> None:
        entry = f"{path}: {message}"
        if entry not in self.problems:  # the same path may be read for several fields
            self.problems.append(entry)

    def get(self, path: str) -> object:
        """The value at ``path``, or None when absent, null or blank."""
        if not isinstance(self.body, dict):
            return None
        node: object = self.body
        keys = path.split(".")
        for depth, key in enumerate(keys):
            if not isinstance(node, dict):
                # e.g. the corpus's "subscription": "192.168.4.57" (anonymiser quirk).
                self.problem(".".join(keys[:depth]), f"expected an object, got {_kind(node)}")
                return None
            node = node.get(key)
            if node is None:
                return None
        if isinstance(node, str) and not node.strip():
            return None
        return node

    def text(self, path: str) -> str | None:
        value = self.get(path)
        if isinstance(value, str):
            return value.strip()
        if value is not None:
            self.problem(path, f"expected a string, got {_kind(value)}")
        return None

    def code(self, path: str) -> str | None:
        """An identifier: a string, or an integer turned into one (§3: product id varies)."""
        value = self.get(path)
        if isinstance(value, float) and value.is_integer() and abs(value) < 10**MAX_CODE_LENGTH:
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value) if abs(value) < 10**MAX_CODE_LENGTH else "9" * (MAX_CODE_LENGTH + 1)
        else:
            value = self.text(path)
        if value is not None and len(value) > MAX_CODE_LENGTH:
            self.problem(path, f"longer than {MAX_CODE_LENGTH} characters")
            return None
        return value

    def email(self, path: str) -> str | None:
        value = self.text(path)
        if value is None or (len(value) <= MAX_EMAIL_LENGTH and _EMAIL.fullmatch(value)):
            return value.lower() if value is not None else None  # §3: lower-case and trim
        self.problem(path, "not an e-mail address")
        return None

    def name(self, path: str) -> str | None:
        """A person's name, cut to :data:`MAX_NAME_LENGTH` (still their name, for display)."""
        value = self.text(path)
        if value is not None and len(value) > MAX_NAME_LENGTH:
            self.problem(path, f"longer than {MAX_NAME_LENGTH} characters, cut")
            return value[:MAX_NAME_LENGTH].rstrip()
        return value

    def integer(self, path: str) -> int | None:
        """A non-negative integer up to :data:`MAX_INTEGER` (a number, or digits in a string).

        Bounded before converting: ``int()`` of 5,000 digits raises, and a huge count means nothing.
        """
        value = self.get(path)
        if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
            digits = value.strip().lstrip("0") or "0"
            value = int(digits) if len(digits) <= len(str(MAX_INTEGER)) else MAX_INTEGER + 1
        elif isinstance(value, float) and value.is_integer():
            value = int(value) if abs(value) <= MAX_INTEGER else MAX_INTEGER + 1
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            if 0 <= value <= MAX_INTEGER:
                return value
            self.problem(path, f"out of range (0 to {MAX_INTEGER})")
            return None
        self.problem(path, f"expected an integer, got {_kind(value)}")
        return None

    def when(self, path: str) -> datetime | None:
        """Epoch milliseconds (number or numeric string) or an ISO 8601 string, as UTC (§3)."""
        value = self.get(path)
        if value is None:
            return None
        result = None
        if isinstance(value, bool):
            pass
        elif isinstance(value, int | float):
            result = _from_ms(value)
        elif isinstance(value, str) and _NUMERIC.fullmatch(value.strip()):
            result = _from_ms(float(value))
        elif isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value.strip())
                # A naive ISO string is taken as UTC.
                result = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
            except (ValueError, OverflowError):  # "0001-01-01T00:00+01:00" overflows
                result = None
        if result is None:
            detail = repr(value[:40]) if isinstance(value, str) else _kind(value)
            self.problem(path, f"not a date (epoch ms or ISO 8601): {detail}")
        return result

    def area_code(self, path: str) -> str | None:
        value = self.code(path)
        if value is not None and not _PHONE_CHARS.fullmatch(value):
            self.problem(path, "not a plausible area code")
            return None
        return value

    def country(self, path: str) -> str | None:
        value = self.text(path)
        if value is not None and not _COUNTRY_ISO.fullmatch(value):
            self.problem(path, "not an ISO country code")
            return None
        return value.upper() if value is not None else None


class HotmartSource:
    """Hotmart as a :class:`engine.sources.base.Source`."""

    name = "hotmart"
    events = HOTMART_EVENTS
    granting_events = frozenset({"PURCHASE_APPROVED", "PURCHASE_COMPLETE", "PURCHASE_BILLET_PRINTED"})
    revoking_events = frozenset({"PURCHASE_REFUNDED", "PURCHASE_CHARGEBACK"})
    paid_until_events = frozenset({"PURCHASE_APPROVED", "UPDATE_SUBSCRIPTION_CHARGE_DATE"})

    envelope = staticmethod(envelope)
    parse = staticmethod(parse)
    dedupe_key = staticmethod(dedupe_key)
    verify = staticmethod(verify_hottok)


SOURCE = HotmartSource()
