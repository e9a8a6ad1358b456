"""A year of history for a 2,000-student course, written straight into a migrated database.

``fill(dsn)`` simulates each student's year with the shipped rules' own planner (the
transitions, their steps, the timers they schedule and cancel, the ledger, the codes), then
writes the result with COPY:

* students and their memberships (``curso`` one-time, ``comunidade`` and ``combo``
  subscriptions; a quarter buy a second product) ending mostly ``active``, ``churned`` or
  ``refunded``, a few ``pending_onboarding`` (never linked: their code is re-sent every week);
* their events in arrival order: abandoned carts and boletos before the purchase, the
  approval, the reminder and code-expiry timers, the Discord link, warranty completions,
  monthly renewals, late payments and grace periods, cancellations and the end of the paid
  period, disputes, refunds and chargebacks, rejoins, admins' code requests, and the course's
  engagement webhooks (``CLUB_*``); leads' abandoned carts that never became students;
* every planned step (``action_runs``), overwhelmingly ``done`` or ``skipped`` (ManyChat was
  switched on two weeks into the year), a handful ``failed`` with their alerts;
* the grant ledger, onboarding codes (used, replaced, revoked), timers (fired, cancelled, a few
  pending in the future), class enrollments, link attempts, the nightly reconcile runs;
* a few events ``needs_attention`` (a product no file claims) and ``failed`` (Discord refused).

Size: about 100 events and 500 steps per student and year (the issue's database: 200,000
events, 1,000,000 steps). The lifecycle itself makes about 9 events and 20 steps per student
and year under the shipped rules; the rest are engagement webhooks and leads' carts (ignored,
no step) and the nightly reconcile's ``RECONCILE`` events (``RECONCILE_APPLY=grants``: access
someone took away, given back), which carry the remaining steps, each with its ``history``
entry and its reconcile run. Then ``VACUUM (ANALYZE)``: a database with months behind it has
been vacuumed and analyzed. Deterministic for a seed (the dates follow the day it runs).

    .venv/bin/python bench/history.py [--students 2000] [--days 365] [--keep]

prints the counts and the time it took, into a throwaway database (``--keep`` keeps it).
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import random
import re
import sys
import time
import uuid
import zlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

EVENTS_PER_STUDENT_YEAR = 100
STEPS_PER_EVENT = 5
EXAMPLES = REPO / "examples" / "hotmart"

FIRST_NAMES = (
    "Ana", "Bruno", "Carla", "Diego", "Eduarda", "Felipe", "Gabriela", "Henrique", "Isabela", "João", "Karina",
    "Lucas", "Mariana", "Nicolas", "Olívia", "Paulo", "Quésia", "Rafael", "Sofia", "Thiago", "Úrsula", "Vinícius",
    "Yasmin", "Pedro", "Beatriz", "Caio", "Letícia", "Mateus",
)  # fmt: skip
LAST_NAMES = (
    "Silva", "Santos", "Oliveira", "Souza", "Rodrigues", "Ferreira", "Alves", "Pereira", "Lima", "Gomes", "Costa",
    "Ribeiro", "Martins", "Carvalho", "Almeida", "Lopes", "Soares", "Fernandes", "Vieira", "Barbosa", "Rocha", "Dias",
    "Nascimento", "Andrade", "Moreira", "Nunes", "Marques",
)  # fmt: skip
DOMAINS = ("gmail.com", "hotmail.com", "outlook.com", "yahoo.com.br", "uol.com.br", "icloud.com")

# Sentinels the cached plans carry; each event puts its own values in.
_S_EMAIL = "sentinel.email@bench.invalid"
_S_TX = "HPSENTINELTX"
_S_TOKEN = "ZZZZZZZZ"
_S_DISCORD = "99999999999999999"
_S_PREVIOUS = "88888888888888888"
_S_NAME = "Sentinel Name"

# Hotmart example file of each event type (the first purchase of a subscription has its own).
_EXAMPLE = {
    "PURCHASE_APPROVED": "purchase_approved.json",
    "PURCHASE_APPROVED/subscription": "purchase_approved_subscription_first.json",
    "PURCHASE_APPROVED/renewal": "purchase_approved_renewal.json",
    "PURCHASE_BILLET_PRINTED": "purchase_billet_printed.json",
    "PURCHASE_CANCELED": "purchase_canceled.json",
    "PURCHASE_CHARGEBACK": "purchase_chargeback.json",
    "PURCHASE_COMPLETE": "purchase_complete.json",
    "PURCHASE_DELAYED": "purchase_delayed.json",
    "PURCHASE_EXPIRED": "purchase_expired.json",
    "PURCHASE_OUT_OF_SHOPPING_CART": "purchase_out_of_shopping_cart.json",
    "PURCHASE_PROTEST": "purchase_protest.json",
    "PURCHASE_REFUNDED": "purchase_refunded.json",
    "SUBSCRIPTION_CANCELLATION": "subscription_cancellation.json",
    "SWITCH_PLAN": "switch_plan.json",
    "UPDATE_SUBSCRIPTION_CHARGE_DATE": "update_subscription_charge_date.json",
    "CLUB_FIRST_ACCESS": "club_first_access.json",
    "CLUB_MODULE_COMPLETED": "club_module_completed.json",
}
_HEADERS = json.dumps(
    {
        "content-type": "application/json",
        "user-agent": "Hotmart-Webhook/2.0",
        "accept-encoding": "gzip",
        "x-forwarded-proto": "https",
    }
)


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


class _Payloads:
    """The example webhooks, with the places of the values each event varies found once."""

    def __init__(self) -> None:
        self._templates: dict[str, tuple[dict, list[tuple[list, str]]]] = {}
        for key, name in _EXAMPLE.items():
            body = json.loads((EXAMPLES / name).read_text())
            self._templates[key] = (body, self._paths(body))

    @staticmethod
    def _paths(body: dict) -> list[tuple[list, str]]:
        found: list[tuple[list, str]] = []

        def walk(node: Any, path: list) -> None:
            items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
            for key, value in items:
                here = [*path, key]
                if isinstance(value, dict | list):
                    walk(value, here)
                    continue
                kind = None
                if key == "email":
                    kind = "email"
                elif key == "name" and path and path[-1] in ("buyer", "user", "subscriber"):
                    kind = "name"
                elif key == "first_name":
                    kind = "first"
                elif key == "transaction":
                    kind = "tx"
                elif key == "id" and path and path[-1] == "product":
                    kind = "product_str" if isinstance(value, str) else "product"
                elif key == "name" and path and path[-1] == "product":
                    kind = "product_name"
                elif key == "code" and path and path[-1] == "subscriber":
                    kind = "subscriber"
                elif key == "recurrence_number":
                    kind = "recurrence"
                elif key == "date_next_charge":
                    kind = "next_charge"
                elif key in ("approved_date", "order_date", "cancellation_date"):
                    kind = "moment"
                if kind:
                    found.append((here, kind))
            return None

        walk(body, [])
        return found

    def render(self, key: str, values: dict[str, Any]) -> str:
        body, paths = self._templates[key]
        for path, kind in paths:
            if kind in values:
                node = body
                for part in path[:-1]:
                    node = node[part]
                node[path[-1]] = values[kind]
        return json.dumps({**body, "id": values["id"], "creation_date": values["creation"]}, ensure_ascii=False)


# --- the simulation's records ----------------------------------------------------------------


class _Student:
    __slots__ = (
        "id",
        "email",
        "name",
        "phone",
        "discord_id",
        "previous_discord_id",
        "manychat_id",
        "created_at",
        "updated_at",
        "memberships",
        "linked_at",
        "is_student",
    )

    def __init__(self, email: str, name: str, phone: str):
        self.id: int | None = None
        self.email, self.name, self.phone = email, name, phone
        self.discord_id: str | None = None
        self.previous_discord_id: str | None = None
        self.manychat_id: str | None = None
        self.created_at: datetime | None = None
        self.updated_at: datetime | None = None
        self.memberships: dict[str, _Membership] = {}
        self.linked_at: datetime | None = None
        self.is_student = False


class _Membership:
    __slots__ = (
        "id",
        "student",
        "product",
        "state",
        "transaction",
        "subscriber_code",
        "paid_until",
        "last_event_at",
        "last_event",
        "state_changed_at",
        "created_at",
        "updated_at",
        "timers",
        "ledger",
    )

    def __init__(self, student: _Student, product: str, at: datetime):
        self.id: int | None = None
        self.student, self.product = student, product
        self.state = "new"
        self.transaction: str | None = None
        self.subscriber_code: str | None = None
        self.paid_until: datetime | None = None
        self.last_event_at: datetime | None = None
        self.last_event: _Event | None = None
        self.state_changed_at = self.created_at = self.updated_at = at
        self.timers: dict[str, _Timer] = {}
        self.ledger: dict[tuple[str, str], datetime] = {}


class _Event:
    __slots__ = (
        "id",
        "source",
        "type",
        "dedupe",
        "payload",
        "headers",
        "received_at",
        "occurred_at",
        "status",
        "reason",
        "email",
        "transaction",
        "student",
        "product_key",
        "plans",
        "correlation",
        "processed_at",
        "runs",
        "timer",
        "token",
    )

    def __init__(self, **values: Any):
        self.id: int | None = None
        self.runs: list[_Run] = []
        self.timer: _Timer | None = None
        self.token: _Token | None = None
        self.plans: list[dict] | None = None
        self.reason: str | None = None
        for name, value in values.items():
            setattr(self, name, value)


class _Run:
    __slots__ = ("id", "event", "membership", "index", "action", "params", "status", "error", "detail", "at")

    def __init__(self, event: _Event, membership: _Membership | None, index: int, action: str, params: dict):
        self.id: int | None = None
        self.event, self.membership, self.index, self.action, self.params = event, membership, index, action, params
        self.status, self.error, self.detail = "done", None, None
        self.at = event.received_at


class _Timer:
    __slots__ = ("id", "membership", "event_type", "due_at", "status", "created_by", "fired", "created_at")

    def __init__(self, membership: _Membership, event_type: str, due_at: datetime, created_by: _Event):
        self.id: int | None = None
        self.membership, self.event_type, self.due_at = membership, event_type, due_at
        self.status = "pending"
        self.created_by: _Event | None = created_by
        self.fired: _Event | None = None
        self.created_at = created_by.received_at


class _Token:
    __slots__ = (
        "id",
        "code",
        "student",
        "membership",
        "created_at",
        "expires_at",
        "used_at",
        "used_by",
        "revoked_at",
        "revoked_reason",
    )

    def __init__(self, code: str, student: _Student, membership: _Membership | None, at: datetime, expires: datetime):
        self.id: int | None = None
        self.code, self.student, self.membership = code, student, membership
        self.created_at, self.expires_at = at, expires
        self.used_at: datetime | None = None
        self.used_by: str | None = None
        self.revoked_at: datetime | None = None
        self.revoked_reason: str | None = None


@dataclass
class _World:
    rng: random.Random
    start: datetime
    end: datetime
    manychat_on: datetime
    version: str
    students: list[_Student] = field(default_factory=list)
    leads: list[_Student] = field(default_factory=list)
    memberships: list[_Membership] = field(default_factory=list)
    events: list[_Event] = field(default_factory=list)
    timers: list[_Timer] = field(default_factory=list)
    tokens: list[_Token] = field(default_factory=list)
    # (class, student) -> (enrolled at, removed at or None): a removal stays, as a tombstone
    enrollments: dict[tuple[str, int], tuple[datetime, datetime | None]] = field(default_factory=dict)
    alerts: list[dict] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    attempts: list[tuple] = field(default_factory=list)
    codes: set[str] = field(default_factory=set)
    discord_ids: set[str] = field(default_factory=set)
    transactions: int = 0


class _Template:
    """A plan of the rules for one situation, with the values each event puts in (as text)."""

    _SENTINELS = (
        (_S_EMAIL, "email"),
        (_S_TX, "tx"),
        (_S_TOKEN, "token"),
        (_S_DISCORD, "discord"),
        (_S_PREVIOUS, "previous"),
        (_S_NAME, "name"),
    )

    def __init__(self, ignored, to_state, steps, entry, anchor, next_charge):
        self.ignored, self.to_state, self.steps, self.entry = ignored, to_state, steps, entry
        text = entry + "".join(params for _, params, _ in steps)
        self.moments = []
        for found in sorted(set(re.findall(r'"(\d{4}-\d\d-\d\dT[^"]+)"', text))):
            moment = datetime.fromisoformat(found)
            self.moments.append((found, None if moment == next_charge else moment - anchor))
        self.sentinels = [(sentinel, key) for sentinel, key in self._SENTINELS if sentinel in text]

    def fill(self, text: str, values: dict[str, Any]) -> str:
        for found, delta in self.moments:
            if found in text:
                when = values["next_charge"] if delta is None else values["now"] + delta
                text = text.replace(found, when.isoformat())
        for sentinel, key in self.sentinels:
            if sentinel in text:
                text = text.replace(sentinel, str(values.get(key) or ""))
        return text


class _Simulation:
    """One student's year at a time, through the shipped rules' planner."""

    def __init__(self, world: _World):
        from engine.pipeline.ledger import RESOURCES
        from engine.pipeline.rules_repository import RulesRepository

        repo = RulesRepository(REPO / "rules")
        self.rules, self.planner, self.version = repo.rules, repo.planner, repo.version or "bench-history"
        self.world = world
        self.resources = RESOURCES
        self.payloads = _Payloads()
        self.products = self.rules.products
        self._plans: dict[tuple, Any] = {}
        self._anchor = datetime(2030, 1, 1, tzinfo=UTC)
        self._next_charge = self._anchor + timedelta(days=31, minutes=17)

    # -- identities ----------------------------------------------------------------------------

    def person(self, number: int, lead: bool = False) -> _Student:
        rng = self.world.rng
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        plain = first.lower().translate(str.maketrans("áéíóúãõçü", "aeiouaocu"))
        tag = "lead" if lead else ""
        email = f"{plain}.{last.lower()}{tag}{number}@{rng.choice(DOMAINS)}"
        phone = f"+55{rng.randint(11, 99)}9{rng.randint(10000000, 99999999)}"
        return _Student(email, f"{first} {last} {rng.choice(LAST_NAMES)}", phone)

    def code(self) -> str:
        from engine.onboarding.codes import CODE_ALPHABET

        while True:
            code = "".join(self.world.rng.choice(CODE_ALPHABET) for _ in range(8))
            if code not in self.world.codes:
                self.world.codes.add(code)
                return code

    def discord_id(self) -> str:
        while True:
            value = str(self.world.rng.randint(10**17, 10**18 - 1))
            if value not in self.world.discord_ids:
                self.world.discord_ids.add(value)
                return value

    def transaction(self) -> str:
        self.world.transactions += 1
        return f"HP{13000000000000 + self.world.transactions * 7919 % 10**13:014d}"

    # -- the planner, cached per situation -----------------------------------------------------

    def plan(
        self, event_type: str, product: str, state: str, *, linked: bool, renewal=False, passed=False, relink=False
    ):
        key = (event_type, product, state, linked, renewal, passed, relink)
        cached = self._plans.get(key)
        if cached is None:
            cached = self._plans[key] = self._template(event_type, product, state, linked, renewal, passed, relink)
        return cached

    def _template(self, event_type, product_key, state, linked, renewal, passed, relink):
        from engine.lifecycle.planner import Facts

        product = self.products[product_key]
        next_charge = self._anchor - timedelta(days=1) if passed else self._next_charge
        fields = {
            "event_type": event_type,
            "product_id": product.source_ids["hotmart"][0],
            "email": _S_EMAIL,
            "name": _S_NAME,
            "transaction": _S_TX,
            "recurrence_number": 2 if renewal else 1,
            "date_next_charge": next_charge.isoformat(),
            "creation_date": self._anchor.isoformat(),
            "is_test": False,
        }
        if event_type == "DISCORD_LINKED":
            fields.update(discord_id=_S_DISCORD, previous_discord_id=_S_PREVIOUS if relink else None)
        facts = Facts(
            now=self._anchor,
            discord_linked=linked,
            discord_id=_S_DISCORD if linked else None,
            previous_discord_id=_S_PREVIOUS if relink else None,
            email=_S_EMAIL,
            name=_S_NAME,
            token=_S_TOKEN,
        )
        plan = self.planner.plan(event_type, fields, product, state, facts)
        return _Template(
            plan.ignored_reason,
            plan.to_state,
            [(s.action, json.dumps(s.params, ensure_ascii=False), s.skip_reason) for s in plan.steps],
            json.dumps(plan.to_dict(), ensure_ascii=False),
            self._anchor,
            self._next_charge,
        )

    # -- one student's year --------------------------------------------------------------------

    def student_year(self, student: _Student, purchases: list[tuple[datetime, str]], fate: dict) -> None:
        """Run the student's scripted inputs and the timers their plans schedule, in time order."""
        queue: list[tuple[datetime, int, str, dict]] = []
        order = 0

        def push(at: datetime, kind: str, **extra: Any) -> None:
            nonlocal order
            order += 1
            heapq.heappush(queue, (at, order, kind, extra))

        rng = self.world.rng
        end = self.world.end
        for at, product in purchases:
            for _ in range(_poisson(rng, 0.6)):
                push(
                    at - timedelta(hours=rng.uniform(1, 240)),
                    "hotmart",
                    type="PURCHASE_OUT_OF_SHOPPING_CART",
                    product=product,
                )
            tx = self.transaction()
            if rng.random() < 0.2:
                push(
                    at - timedelta(hours=rng.uniform(2, 70)),
                    "hotmart",
                    type="PURCHASE_BILLET_PRINTED",
                    product=product,
                    tx=tx,
                )
            push(at, "hotmart", type="PURCHASE_APPROVED", product=product, tx=tx, recurrence=1)
            kind = self.products[product].kind
            plan = fate[product]
            if kind == "one_time":
                if plan == "refunded":
                    when = at + timedelta(days=rng.uniform(1, 6))
                    if rng.random() < 0.3:
                        push(when - timedelta(hours=20), "hotmart", type="PURCHASE_PROTEST", product=product, tx=tx)
                    push(when, "hotmart", type="PURCHASE_REFUNDED", product=product, tx=tx)
                else:
                    push(
                        at + timedelta(days=7, hours=rng.uniform(0, 30)),
                        "hotmart",
                        type="PURCHASE_COMPLETE",
                        product=product,
                        tx=tx,
                    )
                continue
            self._subscription(push, at, product, tx, plan)
        if fate.get("link", True):
            first = min(at for at, _ in purchases)
            delay = timedelta(hours=min(rng.lognormvariate(1.5, 1.3), 150))
            push(first + delay, "link")
            if rng.random() < 0.04:
                push(first + delay + timedelta(days=rng.uniform(10, 200)), "link", relink=True)
            for _ in range(_poisson(rng, 1.0)):
                push(first + delay + timedelta(days=rng.uniform(1, 300)), "joined")
        if rng.random() < 0.03:
            push(min(at for at, _ in purchases) + timedelta(days=rng.uniform(8, 60)), "code_request")
        while queue:
            at, _, kind, extra = heapq.heappop(queue)
            if at >= end:
                break
            self._fire_due(student, at)
            if kind == "hotmart":
                self.hotmart(student, at, extra)
            elif kind == "link":
                self.link(student, at, relink=extra.get("relink", False))
            elif kind == "joined":
                self.internal(student, at, "MEMBER_JOINED", None, source="bot")
            elif kind == "code_request":
                product = next(iter(student.memberships), None)
                if product:
                    self.internal(student, at, "CODE_REQUESTED", product, source="admin")
        self._fire_due(student, end)

    def _subscription(self, push, at: datetime, product: str, tx: str, plan: str) -> None:
        rng = self.world.rng
        end = self.world.end
        month = timedelta(days=30)
        if plan == "refunded":
            push(at + timedelta(days=rng.uniform(1, 6)), "hotmart", type="PURCHASE_REFUNDED", product=product, tx=tx)
            return
        last = at + timedelta(days=rng.uniform(60, 330)) if plan in ("churned", "cancelled", "overdue") else end
        if plan == "chargeback":
            last = at + timedelta(days=rng.uniform(20, 90))
        if plan == "cancelled":
            last = end - timedelta(days=rng.uniform(3, 20))
        recurrence, when = 1, at
        while when + month < min(last, end):
            when += month
            recurrence += 1
            if rng.random() < 0.06 and plan != "overdue":
                push(when, "hotmart", type="PURCHASE_DELAYED", product=product, tx=tx, recurrence=recurrence)
                push(
                    when + timedelta(days=rng.uniform(1, 5)),
                    "hotmart",
                    type="PURCHASE_APPROVED",
                    product=product,
                    tx=tx,
                    recurrence=recurrence,
                )
            else:
                push(when, "hotmart", type="PURCHASE_APPROVED", product=product, tx=tx, recurrence=recurrence)
            if rng.random() < 0.03:
                push(when + timedelta(days=2), "hotmart", type="UPDATE_SUBSCRIPTION_CHARGE_DATE", product=product)
        if plan == "churned":
            if rng.random() < 0.5:  # cancelled, then the paid period ended
                push(
                    when + timedelta(days=rng.uniform(1, 25)),
                    "hotmart",
                    type="SUBSCRIPTION_CANCELLATION",
                    product=product,
                    tx=tx,
                    next_charge=when + month,
                )
            else:  # the renewal failed and the grace period ran out
                push(
                    when + month, "hotmart", type="PURCHASE_DELAYED", product=product, tx=tx, recurrence=recurrence + 1
                )
        elif plan == "cancelled":
            push(last, "hotmart", type="SUBSCRIPTION_CANCELLATION", product=product, tx=tx, next_charge=when + month)
        elif plan == "overdue":
            push(
                end - timedelta(days=rng.uniform(0.5, 5)),
                "hotmart",
                type="PURCHASE_DELAYED",
                product=product,
                tx=tx,
                recurrence=recurrence + 1,
            )
        elif plan == "chargeback":
            push(last, "hotmart", type="PURCHASE_CHARGEBACK", product=product, tx=tx)

    def _fire_due(self, student: _Student, until: datetime) -> None:
        while True:
            due = [t for m in student.memberships.values() for t in m.timers.values() if t.due_at <= until]
            if not due:
                return
            timer = min(due, key=lambda t: t.due_at)
            membership = timer.membership
            del membership.timers[timer.event_type]
            timer.status = "fired"
            at = timer.due_at + timedelta(seconds=self.world.rng.uniform(1, 30))  # the sweep's poll
            event = self.internal(student, at, timer.event_type, membership.product, source="timer", timer=timer)
            timer.fired = event

    # -- inputs ----------------------------------------------------------------------------------

    def hotmart(self, student: _Student, at: datetime, spec: dict) -> None:
        rng = self.world.rng
        event_type, product = spec["type"], spec["product"]
        prod = self.products[product]
        recurrence = spec.get("recurrence")
        membership = student.memberships.get(product)
        created = at - timedelta(seconds=rng.uniform(0.5, 20))
        tx = spec.get("tx")
        next_charge = spec.get("next_charge")
        if next_charge is None and prod.kind == "subscription" and event_type == "PURCHASE_APPROVED":
            next_charge = at + timedelta(days=30)
        key = event_type
        if event_type == "PURCHASE_APPROVED" and prod.kind == "subscription":
            key = "PURCHASE_APPROVED/renewal" if (recurrence or 1) > 1 else "PURCHASE_APPROVED/subscription"
        first = student.name.split()[0]
        values = {
            "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "creation": _ms(created),
            "email": student.email,
            "name": student.name,
            "first": first,
            "product": int(prod.source_ids["hotmart"][0]),
            "product_str": prod.source_ids["hotmart"][0],
            "product_name": prod.name,
            "subscriber": _subscriber_code(student, product),
            "moment": _ms(created) - 4000,
        }
        if tx:
            values["tx"] = tx
        if recurrence:
            values["recurrence"] = recurrence
        if next_charge is not None:
            values["next_charge"] = _ms(next_charge)
        payload = self.payloads.render(key, values)
        event = _Event(
            source="hotmart",
            type=event_type,
            dedupe=f"hotmart:{values['id']}",
            payload=payload,
            headers=_HEADERS,
            received_at=at,
            occurred_at=created.replace(microsecond=created.microsecond // 1000 * 1000),
            status="received",
            email=student.email,
            transaction=tx,
            student=student if student.is_student else None,
            product_key=None,
            correlation=uuid.UUID(int=rng.getrandbits(128)).hex,
            processed_at=at + timedelta(milliseconds=rng.uniform(80, 2500)),
        )
        self.world.events.append(event)
        state = membership.state if membership else "new"
        template = self.plan(
            event_type,
            product,
            state,
            linked=bool(student.discord_id),
            renewal=(recurrence or 1) > 1,
            passed=next_charge is not None and next_charge < at,
        )
        if template.ignored:
            if not student.is_student:
                event.status, event.reason = "ignored", template.ignored
                event.plans = [(template.entry, None)]
                return
            self._ignore(event, [f"{product}: {template.ignored}"], [(template.entry, membership)])
            event.product_key = product
            return
        if not student.is_student:
            self._make_student(student, at)
            event.student = student
        if membership is None:
            membership = student.memberships[product] = _Membership(student, product, at)
            self.world.memberships.append(membership)
        values = {
            "now": at,
            "email": student.email,
            "tx": tx,
            "name": student.name,
            "next_charge": next_charge or at,
            "discord": student.discord_id,
        }
        self._apply(event, membership, template, values, at)
        event.product_key = product
        membership.last_event_at = created
        if tx:
            membership.transaction = tx
        if prod.kind == "subscription":
            membership.subscriber_code = _subscriber_code(student, product)
            if event_type == "PURCHASE_APPROVED" and next_charge is not None:
                membership.paid_until = next_charge

    def link(self, student: _Student, at: datetime, *, relink: bool = False) -> None:
        rng = self.world.rng
        open_tokens = [t for t in self.world.tokens[-8:] if t.student is student and t.used_at is None]
        token = next((t for t in reversed(open_tokens) if t.revoked_at is None and t.expires_at > at), None)
        if token is None:
            return  # no valid code at that moment: the student gets a new one and links later (or never)
        for _ in range(_poisson(rng, 0.3)):
            self.world.attempts.append((student, at - timedelta(minutes=rng.uniform(1, 30)), "unknown_code"))
        user = self.discord_id()
        previous = student.discord_id if relink and student.discord_id else None
        token.used_at, token.used_by = at, user
        if previous:
            student.previous_discord_id = previous
        student.discord_id = user
        student.linked_at = student.linked_at or at
        self.internal(
            student,
            at,
            "DISCORD_LINKED",
            None,
            source="bot",
            token=token,
            fields={"discord_id": user, "previous_discord_id": previous},
        )

    def internal(
        self,
        student: _Student,
        at: datetime,
        event_type: str,
        product: str | None,
        *,
        source: str,
        timer: _Timer | None = None,
        token: _Token | None = None,
        fields: dict | None = None,
    ) -> _Event:
        rng = self.world.rng
        if timer is not None:
            fields = {"timer_id": None, "due_at": timer.due_at.isoformat()}
        payload = {"event": event_type, "product": product, "email": student.email, "fields": fields or {}}
        event = _Event(
            source=source,
            type=event_type,
            dedupe=f"{source}:{uuid.UUID(int=rng.getrandbits(128)).hex}",
            payload=payload,
            headers=None,
            received_at=at,
            occurred_at=at,
            status="received",
            email=student.email,
            transaction=None,
            student=student,
            product_key=product,
            correlation=uuid.UUID(int=rng.getrandbits(128)).hex,
            processed_at=at + timedelta(milliseconds=rng.uniform(50, 1500)),
        )
        event.timer, event.token = timer, token
        self.world.events.append(event)
        targets = [student.memberships[product]] if product else list(student.memberships.values())
        reasons, entries, applied = [], [], False
        for membership in targets:
            linked = bool(student.discord_id)
            relink = event_type == "DISCORD_LINKED" and bool((fields or {}).get("previous_discord_id"))
            template = self.plan(event_type, membership.product, membership.state, linked=linked, relink=relink)
            if template.ignored:
                reasons.append(f"{membership.product}: {template.ignored}")
                entries.append((template.entry, membership))
                continue
            values = {
                "now": at,
                "email": student.email,
                "name": student.name,
                "discord": student.discord_id,
                "previous": student.previous_discord_id,
                "next_charge": membership.paid_until or at,
            }
            self._apply(event, membership, template, values, at, plans=entries)
            applied = True
        if not targets:
            self._ignore(event, ["the student has no membership"], None)
        elif not applied:
            self._ignore(event, reasons, entries)
        else:
            event.plans = entries
        return event

    # -- applying a plan -------------------------------------------------------------------------

    def _ignore(self, event: _Event, reasons: list[str], plans: list[dict] | None) -> None:
        event.status, event.reason, event.plans = "ignored", "; ".join(reasons), plans

    def _make_student(self, student: _Student, at: datetime) -> None:
        student.is_student = True
        student.created_at = student.updated_at = at
        self.world.students.append(student)

    def _apply(self, event, membership, template: _Template, values, at, plans=None) -> None:
        rng = self.world.rng
        student = membership.student
        to_state = template.to_state
        code = self.code() if any(action == "issue_token" for action, _, _ in template.steps) else None
        values["token"] = code
        rendered = [
            (action, json.loads(template.fill(params, values)), skip) for action, params, skip in template.steps
        ]
        filled = (template.fill(template.entry, values), membership)
        if plans is None:
            event.plans = [filled]
        else:
            plans.append(filled)
        if to_state and to_state != membership.state:
            membership.state, membership.state_changed_at = to_state, at
        membership.last_event, membership.updated_at = event, at
        event.status = "processed"
        failed = False
        for action, params, skip in rendered:
            run = _Run(event, membership, len(event.runs), action, params)
            event.runs.append(run)
            if failed:
                run.status = "pending"
                continue
            if skip:
                run.status, run.detail = "skipped", skip
                continue
            use = self.resources.get(action)
            if action in ("add_tag", "remove_tag", "set_field", "trigger_flow") and at < self.world.manychat_on:
                run.status, run.error, run.detail = "skipped", "flag.disabled", "MANYCHAT_ENABLED is off"
                continue
            if action in ("add_role", "remove_role") and not student.discord_id:
                run.status, run.detail = "skipped", "student not linked to Discord"
                continue
            if action in ("add_role", "trigger_flow") and rng.random() < 0.0015:
                failed = True
                run.status, run.error = "failed", "discord.forbidden" if action == "add_role" else "manychat.error"
                run.detail = "Missing Permissions (50013)" if action == "add_role" else "HTTP 500 from ManyChat"
                event.status = "failed"
                event.reason = f"step {run.index} ({action}) failed: {run.error}"
                self._alert(run.error, f"Step {action} for {student.email} (event ?, {event.type}) failed", event, run)
                continue
            if use is not None:
                resources = list(params.get(use.param) or [])
                for resource in resources:
                    if use.grants:
                        membership.ledger[(use.kind, resource)] = at
                        if use.kind == "class":
                            enrolled = self.world.enrollments.get((resource, id(student)))
                            if enrolled is None or enrolled[1] is not None:
                                self.world.enrollments[(resource, id(student))] = (at, None)
                    elif "discord_id" not in params:
                        if membership.ledger.pop((use.kind, resource), None) is None:
                            run.detail = "nothing to remove; the rest was not granted by the engine"
                        enrolled = self.world.enrollments.get((resource, id(student)))
                        if use.kind == "class" and enrolled is not None and enrolled[1] is None:
                            self.world.enrollments[(resource, id(student))] = (enrolled[0], at)
                if use.kind == "manychat_tag" and student.manychat_id is None:
                    student.manychat_id = str(rng.randint(10**8, 10**9 - 1))
            elif action == "issue_token":
                for token in self.world.tokens[-8:]:
                    if token.student is student and token.used_at is None and token.revoked_at is None:
                        token.revoked_at, token.revoked_reason = at, "replaced"
                token = _Token(params["code"], student, membership, at, datetime.fromisoformat(params["expires_at"]))
                self.world.tokens.append(token)
                run.detail = f"code issued, valid until {token.expires_at.isoformat()}"
            elif action == "revoke_token":
                for token in self.world.tokens[-8:]:
                    if token.student is student and token.used_at is None and token.revoked_at is None:
                        token.revoked_at, token.revoked_reason = at, "access_ended"
            elif action == "schedule":
                old = membership.timers.pop(params["event"], None)
                if old is not None:
                    old.status = "cancelled"
                timer = _Timer(membership, params["event"], datetime.fromisoformat(params["due_at"]), event)
                membership.timers[params["event"]] = timer
                self.world.timers.append(timer)
            elif action == "cancel_timers":
                for name in params.get("events") or list(membership.timers):
                    timer = membership.timers.pop(name, None)
                    if timer is not None:
                        timer.status = "cancelled"
            elif action == "alert":
                self._alert("rules.alert", params["message"], event, run)

    def _alert(self, kind: str, message: str, event: _Event, run: _Run | None) -> None:
        rng = self.world.rng
        at = event.received_at
        self.world.alerts.append(
            {
                "kind": kind,
                "message": message,
                "event": event,
                "run": run,
                "student": event.student,
                "created_at": at,
                "notified": "done",
                "acknowledged_at": at + timedelta(hours=rng.uniform(1, 72)) if rng.random() < 0.9 else None,
                "group_key": None,
                "count": 1,
                "last_seen_at": at,
                "notified_at": at + timedelta(seconds=2),
            }
        )


def _subscriber_code(student: _Student, product: str) -> str:
    return f"SB{zlib.crc32(f'{student.email}/{product}'.encode()) % 10**8:08d}"


def _poisson(rng: random.Random, mean: float) -> int:
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


# --- the year ----------------------------------------------------------------------------------


def _simulate(students: int, days: int, seed: int, now: datetime) -> tuple[_World, _Simulation]:
    rng = random.Random(seed)
    start = now - timedelta(days=days)
    world = _World(rng=rng, start=start, end=now, manychat_on=start + timedelta(days=14), version="")
    sim = _Simulation(world)
    world.version = sim.version
    # Product mix and fates (what happened to each membership by the end of the year).
    fates = {
        "one_time": [("active", 0.90), ("refunded", 0.10)],
        "subscription": [
            ("active", 0.50),
            ("churned", 0.33),
            ("refunded", 0.07),
            ("cancelled", 0.05),
            ("overdue", 0.03),
            ("chargeback", 0.02),
        ],
    }
    number = 0
    span = (now - start).total_seconds()
    while len(world.students) < students:
        number += 1
        person = sim.person(number)
        # Sales come in launches: a third of the year's buyers in three launch weeks.
        if rng.random() < 0.35:
            launch = rng.choice((0.12, 0.45, 0.78))
            offset = span * launch + rng.uniform(0, 7 * 86400)
        else:
            offset = rng.uniform(0, span - 86400)
        first_at = start + timedelta(seconds=offset)
        primary = rng.choices(("curso", "comunidade", "combo"), weights=(45, 35, 20))[0]
        purchases = [(first_at, primary)]
        if rng.random() < 0.25:
            other = rng.choice([p for p in ("curso", "comunidade") if p != primary])
            second = first_at + timedelta(days=rng.uniform(1, 120))
            if second < now - timedelta(hours=1):
                purchases.append((second, other))
        fate = {}
        for _, product in purchases:
            choices = fates[sim.products[product].kind]
            fate[product] = rng.choices([c for c, _ in choices], weights=[w for _, w in choices])[0]
        fate["link"] = rng.random() > 0.015
        sim.student_year(person, purchases, fate)
        if not person.is_student:
            world.leads.append(person)
    return world, sim


def _top_up(world: _World, sim: _Simulation, events_target: int, steps_target: int) -> None:
    """Up to the issue's sizes: engagement webhooks and leads' carts (ignored, no steps) and the
    nightly reconcile's RECONCILE events (``RECONCILE_APPLY=grants``: access a moderator or a
    ManyChat automation took away, given back), which carry the steps the lifecycle alone
    does not make for one course's year."""
    rng = world.rng
    span = (world.end - world.start).total_seconds()
    missing = max(events_target - len(world.events), 0)
    steps = sum(len(e.runs) for e in world.events)
    reconciles = min(missing * 6 // 10, max(steps_target - steps, 0))
    per_event = (steps_target - steps) / reconciles if reconciles else 0
    members = world.memberships
    lead_number = 0
    for i in range(missing - reconciles):
        if i % 4 == 0:  # a lead's abandoned cart (never bought)
            lead_number += 1
            lead = sim.person(10**6 + lead_number, lead=True)
            at = world.start + timedelta(seconds=rng.uniform(0, span))
            sim.hotmart(lead, at, {"type": "PURCHASE_OUT_OF_SHOPPING_CART", "product": rng.choice(list(sim.products))})
            world.leads.append(lead)
            continue
        membership = rng.choice(members)
        window = (world.end - membership.created_at).total_seconds()
        at = membership.created_at + timedelta(seconds=rng.uniform(60, max(window, 120)))
        event_type = "CLUB_MODULE_COMPLETED" if rng.random() < 0.9 else "CLUB_FIRST_ACCESS"
        sim.hotmart(membership.student, at, {"type": event_type, "product": membership.product})
    # The access steps reconcile may apply, per product: (action, params), shared by every run.
    access: dict[str, list[tuple[str, dict]]] = {}
    for key, product in sim.products.items():
        access[key] = [
            (action, {param: list(values)})
            for action, param, values in (
                ("add_role", "role_ids", product.discord_roles),
                ("add_tag", "tags", product.manychat_tags),
                ("enroll", "classes", product.classes),
                ("remove_role", "role_ids", product.discord_roles),
                ("remove_tag", "tags", product.manychat_tags),
                ("unenroll", "classes", product.classes),
            )
            if values
        ]
    made = 0
    taken: set[tuple[int, str]] = set()
    while made < reconciles:
        # A membership, and one of the nights since it began (03:30 UTC, the default schedule).
        membership = rng.choice(members)
        student = membership.student
        first_night = (membership.created_at - world.start).days + 1
        last_night = (world.end - world.start).days - 1
        if first_night > last_night:
            continue
        night = rng.randint(first_night, last_night)
        if (night, student.email) in taken:  # one RECONCILE event per student and run
            continue
        taken.add((night, student.email))
        at = (world.start + timedelta(days=night + 1)).replace(hour=3, minute=30, second=0, microsecond=0)
        at += timedelta(seconds=rng.uniform(40, 900))
        mine = [m for m in student.memberships.values() if m.created_at < at]
        count = max(1, round(rng.uniform(0.5, 1.5) * per_event))
        event = _Event(
            source="reconcile",
            type="RECONCILE",
            dedupe=f"reconcile:{night + 1}:{student.email}",
            payload={
                "event": "RECONCILE",
                "product": None,
                "email": student.email,
                "fields": {"run_id": night + 1, "actor": "schedule"},
            },
            headers=None,
            received_at=at,
            occurred_at=at,
            status="processed",
            email=student.email,
            transaction=None,
            student=student,
            product_key=None,
            correlation=uuid.UUID(int=rng.getrandbits(128)).hex,
            processed_at=at + timedelta(seconds=rng.uniform(0.5, 20)),
        )
        grants: list[str] = []
        runs = event.runs
        for index in range(count):
            owner = mine[index % len(mine)]
            choices = access[owner.product]
            action, params = choices[(index // len(mine)) % len(choices)]
            run = _Run(event, owner, index, action, params)
            if action in _REMOVALS:
                run.detail = "nothing to remove; the rest was not granted by the engine"
            runs.append(run)
            if index < 20:
                grants.append(f"{owner.product}: {action}")
        event.plans = json.dumps(
            [{"reconcile": {"run_id": night + 1, "actor": "schedule", "grants": grants, "revokes": []}}]
        )
        world.events.append(event)
        world.history.append(
            {
                "kind": "reconcile",
                "created_at": at,
                "student": student,
                "membership": None,
                "event": event,
                "actor": "schedule",
                "detail": {"run_id": night + 1, "steps": grants},
            }
        )
        made += 1


_REMOVALS = frozenset({"remove_role", "remove_tag", "unenroll"})


# --- writing -------------------------------------------------------------------------------------


def _assign_ids(world: _World) -> None:
    world.events.sort(key=lambda e: e.received_at)
    for number, student in enumerate(sorted(world.students, key=lambda s: s.created_at), 1):
        student.id = number
    for number, membership in enumerate(sorted(world.memberships, key=lambda m: m.created_at), 1):
        membership.id = number
    for number, event in enumerate(world.events, 1):
        event.id = number
    run_id = 0
    for event in world.events:  # steps are planned with their event
        for run in event.runs:
            run_id += 1
            run.id = run_id
    for number, timer in enumerate(sorted(world.timers, key=lambda t: t.created_at), 1):
        timer.id = number
    for number, token in enumerate(sorted(world.tokens, key=lambda t: t.created_at), 1):
        token.id = number


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


def _plans(plans: list[tuple[str, _Membership | None]] | str | None) -> str | None:
    """The event's stored plans: each entry with the id of the membership it was planned for."""
    if plans is None or isinstance(plans, str):
        return plans
    entries = (f'{text[:-1]}, "membership_id": {m.id if m else "null"}}}' for text, m in plans)
    return "[" + ", ".join(entries) + "]"


def _write(dsn: str, world: _World) -> dict[str, int]:
    import psycopg

    counts: dict[str, int] = {}
    end = world.end
    with psycopg.connect(dsn) as conn:
        try:
            conn.execute("SET session_replication_role = replica")  # the rows are consistent: no FK checks
        except psycopg.Error:
            conn.rollback()
        conn.execute("SET synchronous_commit = off")
        # The big tables' plain indexes are built once after their rows are in (faster than row by row).
        rebuild = conn.execute(
            "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i "
            "JOIN pg_class t ON t.oid = i.indrelid WHERE t.relname IN ('events', 'action_runs') "
            "AND NOT i.indisprimary AND NOT i.indisunique"
        ).fetchall()
        for name, _ in rebuild:
            conn.execute(f"DROP INDEX {name}")

        def copy_rows(table: str, columns: str, rows) -> None:
            n = 0
            with conn.cursor().copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
                    n += 1
            counts[table] = n

        copy_rows(
            "students",
            "id, email, name, phone, discord_id, previous_discord_id, manychat_subscriber_id, created_at, updated_at",
            (
                (
                    s.id,
                    s.email,
                    s.name,
                    s.phone,
                    s.discord_id,
                    s.previous_discord_id,
                    s.manychat_id,
                    s.created_at,
                    s.updated_at or s.created_at,
                )
                for s in world.students
            ),
        )
        copy_rows(
            "memberships",
            'id, student_id, product_key, state, "transaction", subscriber_code, paid_until, last_event_at, '
            "last_event_id, state_changed_at, created_at, updated_at",
            (
                (
                    m.id,
                    m.student.id,
                    m.product,
                    m.state,
                    m.transaction,
                    m.subscriber_code,
                    m.paid_until,
                    m.last_event_at,
                    m.last_event.id if m.last_event else None,
                    m.state_changed_at,
                    m.created_at,
                    m.updated_at,
                )
                for m in world.memberships
            ),
        )
        # A few webhooks no product claims (needs_attention), as a course that sold something new.
        for event in world.rng.sample(world.events, k=min(40, len(world.events))):
            if event.source == "hotmart" and event.status == "ignored" and event.student is not None:
                event.status = "needs_attention"
                event.reason = "no product matches id 4444444"
                event.plans = None
        for event in world.events:
            if event.timer is not None:
                event.dedupe = f"timer:{event.timer.id}"
                event.payload["fields"]["timer_id"] = event.timer.id
            elif event.token is not None:
                event.dedupe = f"link:{event.token.id}"

        def event_rows():
            for e in world.events:
                payload = e.payload if isinstance(e.payload, str) else _json(e.payload)
                yield (
                    e.id,
                    e.source,
                    e.type,
                    e.dedupe,
                    payload,
                    e.headers,
                    e.received_at,
                    e.occurred_at,
                    e.status,
                    e.reason,
                    e.email,
                    e.transaction,
                    e.student.id if e.student else None,
                    e.product_key,
                    _plans(e.plans),
                    world.version,
                    0,
                    e.correlation,
                    e.received_at,
                    e.processed_at,
                )

        copy_rows(
            "events",
            "id, source, type, dedupe_key, payload, headers, received_at, occurred_at, status, reason, email, "
            '"transaction", student_id, product_key, plans, rules_version, failures, correlation_id, enqueued_at, '
            "processed_at",
            event_rows(),
        )

        def run_rows():
            for e in world.events:
                for r in e.runs:
                    finished = None if r.status == "pending" else r.at + timedelta(milliseconds=40 + r.index * 30)
                    result = None if r.status == "pending" else '{"retryable": false, "maybe_delivered": false}'
                    attempts = 0 if r.status == "pending" else 1
                    yield (
                        r.id,
                        e.id,
                        r.membership.id if r.membership else None,
                        r.index,
                        r.action,
                        _json(r.params),
                        r.status,
                        attempts,
                        r.error,
                        r.detail,
                        result,
                        None,
                        r.at,
                        r.at if attempts else None,
                        finished,
                    )

        copy_rows(
            "action_runs",
            "id, event_id, membership_id, step_index, action, params, status, attempts, error, detail, result, "
            "retry_at, created_at, started_at, finished_at",
            run_rows(),
        )
        copy_rows(
            "grants",
            "student_id, membership_id, kind, resource, applied, created_at",
            (
                (m.student.id, m.id, kind, resource, True, at)
                for m in world.memberships
                for (kind, resource), at in m.ledger.items()
            ),
        )
        copy_rows(
            "onboarding_tokens",
            "id, code, student_id, membership_id, created_at, expires_at, used_at, used_by_discord_id, revoked_at, "
            "revoked_reason",
            (
                (
                    t.id,
                    t.code,
                    t.student.id,
                    t.membership.id if t.membership else None,
                    t.created_at,
                    t.expires_at,
                    t.used_at,
                    t.used_by,
                    t.revoked_at,
                    t.revoked_reason,
                )
                for t in world.tokens
            ),
        )
        # A pending timer is never due before the fill ends (the sweep would have fired it).
        floor = end + timedelta(minutes=30)
        copy_rows(
            "scheduled_events",
            "id, membership_id, event_type, due_at, status, created_by_event_id, fired_event_id, created_at",
            (
                (
                    t.id,
                    t.membership.id,
                    t.event_type,
                    max(t.due_at, floor) if t.status == "pending" else t.due_at,
                    t.status,
                    t.created_by.id if t.created_by else None,
                    t.fired.id if t.fired else None,
                    t.created_at,
                )
                for t in world.timers
            ),
        )
        # The needs_attention webhooks' grouped alert, open.
        attention = [e for e in world.events if e.status == "needs_attention"]
        if attention:
            last = attention[-1]
            world.alerts.append(
                {
                    "kind": "rules.unknown_product",
                    "message": f"no product matches id 4444444 (latest: event {last.id}, {last.type}).",
                    "event": last,
                    "run": None,
                    "student": last.student,
                    "created_at": attention[0].received_at,
                    "notified": "done",
                    "acknowledged_at": None,
                    "group_key": "rules.unknown_product:4444444",
                    "count": len(attention),
                    "last_seen_at": last.received_at,
                    "notified_at": attention[0].received_at + timedelta(seconds=2),
                }
            )
        copy_rows(
            "alerts",
            "kind, message, event_id, action_run_id, student_id, created_at, notified, acknowledged_at, group_key, "
            "count, last_seen_at, notified_at",
            (
                (
                    a["kind"],
                    a["message"].replace("event ?", f"event {a['event'].id}"),
                    a["event"].id,
                    a["run"].id if a["run"] else None,
                    a["student"].id if a["student"] else None,
                    a["created_at"],
                    a["notified"],
                    a["acknowledged_at"],
                    a["group_key"],
                    a["count"],
                    a["last_seen_at"],
                    a["notified_at"],
                )
                for a in world.alerts
            ),
        )
        copy_rows(
            "history",
            "created_at, kind, student_id, membership_id, event_id, actor, rules_version, detail",
            (
                (
                    h["created_at"],
                    h["kind"],
                    h["student"].id if h["student"] else None,
                    h["membership"].id if h["membership"] else None,
                    h["event"].id,
                    h["actor"],
                    world.version,
                    _json(h["detail"]),
                )
                for h in world.history
            ),
        )
        classes = sorted({key for key, _ in world.enrollments} | set(_class_names()))
        copy_rows(
            "classes", "id, key, name", ((i, key, _class_names().get(key, key)) for i, key in enumerate(classes, 1))
        )
        class_ids = {key: i for i, key in enumerate(classes, 1)}
        by_object = {id(s): s for s in world.students}
        copy_rows(
            "class_enrollments",
            "class_id, student_id, created_at, changed_at, removed_at",
            (
                (class_ids[key], by_object[sid].id, at, removed or at, removed)
                for (key, sid), (at, removed) in world.enrollments.items()
            ),
        )
        copy_rows(
            "link_attempts",
            "discord_user_id, at, outcome",
            ((str(900000000000000000 + i), at, outcome) for i, (_, at, outcome) in enumerate(world.attempts)),
        )
        nights = max((world.end - world.start).days, 1)
        # The RECONCILE events each night queued, as engine.reconcile.apply records them (their ids).
        applied: dict[int, list[int]] = {}
        for e in world.events:
            if e.source == "reconcile":
                applied.setdefault(e.payload["fields"]["run_id"], []).append(e.id)

        def runs_rows():
            for night in range(1, nights + 1):
                at = (world.start + timedelta(days=night)).replace(hour=3, minute=30, second=0, microsecond=0)
                queued = applied.get(night, [])
                count = len(queued)
                yield (
                    night,
                    at,
                    at + timedelta(seconds=world.rng.uniform(30, 90)),
                    "schedule",
                    "grants",
                    "applied" if count else "reported",
                    len(world.students),
                    json.dumps(
                        {"curso": {"missing": count, "extra": 0, "not_in_server": 3, "subscribers_not_found": 0}}
                    ),
                    '{"changes": [], "truncated": false}',
                    json.dumps({"events": queued, "grants": count, "revokes": 0}),
                )

        copy_rows(
            "reconcile_runs",
            "id, started_at, finished_at, trigger, mode, status, students, counts, diff, applied",
            runs_rows(),
        )

        def sync_rows():
            """The worker's Hotmart sync, a report a night, finding nothing a webhook did not bring."""
            totals = {"found": 0, "grants": 0, "ends": 0, "changes": 0, "none": 0}
            for night in range(1, nights + 1):
                at = (world.start + timedelta(days=night)).replace(hour=4, minute=0, second=0, microsecond=0)
                report = {"read": {"1111111": {"subscriptions": len(world.students), "sales": len(world.students)}}}
                report |= {"totals": totals, "counts": {}, "passed_over": {}, "findings": [], "notes": []}
                since = at - timedelta(days=7)
                finished = at + timedelta(seconds=30)
                yield (
                    night,
                    "hotmart",
                    at,
                    finished,
                    "schedule",
                    "report",
                    "reported",
                    since,
                    "{}",
                    json.dumps(report),
                )

        copy_rows(
            "sync_runs",
            "id, source, started_at, finished_at, trigger, mode, status, since, counts, report",
            sync_rows(),
        )
        for table in (
            "students",
            "memberships",
            "events",
            "action_runs",
            "grants",
            "onboarding_tokens",
            "scheduled_events",
            "alerts",
            "history",
            "classes",
            "class_enrollments",
            "link_attempts",
            "reconcile_runs",
            "sync_runs",
        ):
            conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT coalesce(max(id), 0) + 1 FROM {table}), false)"
            )
        conn.execute("SET maintenance_work_mem = '128MB'")
        for _, definition in rebuild:
            conn.execute(definition)
        conn.commit()
    copied = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        # A database with months behind it has been vacuumed (visibility map set) and analyzed.
        conn.execute("VACUUM (ANALYZE)")
    counts["vacuum_analyze_seconds"] = round(time.perf_counter() - copied, 1)
    return counts


def _class_names() -> dict[str, str]:
    from engine.pipeline.rules_repository import RulesRepository

    return dict(RulesRepository(REPO / "rules").rules.classes)


def fill(dsn: str, *, students: int = 2000, days: int = 365, seed: int = 1) -> dict:
    """Fill the migrated, empty database at ``dsn`` with ``days`` of history of a ``students``-student
    course; returns the row count of each table written (and ``seconds``)."""
    started = time.perf_counter()
    now = datetime.now(UTC).replace(microsecond=0)
    world, sim = _simulate(students, days, seed, now)
    events_target = round(EVENTS_PER_STUDENT_YEAR * students * days / 365)
    _top_up(world, sim, events_target, STEPS_PER_EVENT * events_target)
    _assign_ids(world)
    simulated = time.perf_counter() - started
    written = time.perf_counter()
    counts = _write(dsn, world)
    counts["write_seconds"] = round(time.perf_counter() - written, 1)
    # E-mails with events before (or without) a purchase.
    counts["leads"] = len({e.email for e in world.events if e.student is None})
    counts["seconds"] = round(time.perf_counter() - started, 1)
    counts["simulate_seconds"] = round(simulated, 1)
    counts["events_by_status"] = dict(Counter(e.status for e in world.events).most_common())
    counts["steps_by_status"] = dict(Counter(r.status for e in world.events for r in e.runs).most_common())
    counts["memberships_by_state"] = dict(Counter(m.state for m in world.memberships).most_common())
    counts["timers_by_status"] = dict(Counter(t.status for t in world.timers).most_common())
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=2000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the database (its name is printed)")
    args = parser.parse_args()
    from bench.stack import bench_database

    with bench_database(keep=args.keep) as dsn:
        counts = fill(dsn, students=args.students, days=args.days, seed=args.seed)
        for name, value in counts.items():
            print(f"{name:22} {value}")
        if args.keep:
            print(f"dsn                    {dsn}")


if __name__ == "__main__":
    main()
