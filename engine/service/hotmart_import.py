"""``engine import-students --from hotmart``: today's students read from Hotmart's API instead of a
spreadsheet (the owner's migration plan, step 4).

Read: for each product of the rules that sells on Hotmart, every subscription that may still give
access (active, late, cancelled with its last day of access ahead) of a subscription product, and
every paid purchase (APPROVED or COMPLETE: never refunded) of a one-off product, since Hotmart's
beginning. Each buyer's best holding per product becomes a membership in the state the rules give
it (:mod:`engine.service.imported_state`): linked students (a Discord id already known, or one
from ``--discord-ids``, the CSV import's columns) are placed as linked; the others wait for the
link with a code. A state the rules end (a grace period over) is not imported.

Placed like every import (:func:`engine.service.student_import.place`): existing memberships are
left as they are, so a second run changes nothing. Nothing is sent: the onboarding (the code's
flow, its field and tag, its reminder and expiry) goes out only with ``onboard``, as one event per
waiting membership, planned here from the rules and run by the worker (once: its dedupe key).
One transaction, each buyer's lock taken before their rows are written; nothing is kept when any
membership has a problem or on a dry run.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.hotmart_api import HotmartReader
from engine.db.locks import lock_buyer_for_transaction
from engine.db.models import Event, History, Membership, ScheduledEvent, Student
from engine.lifecycle.access import ProductAccess, derive
from engine.onboarding.codes import new_code
from engine.pipeline.baseline import IMPORT_SOURCE, IMPORTED, snapshot
from engine.pipeline.local_actions import store_code
from engine.pipeline.planning import planned_runs
from engine.pipeline.runtime import DisabledConnector, Runtime
from engine.reconcile.world import Progress, no_progress
from engine.rules.model import Product, Rules
from engine.service.hotmart_import_report import HotmartImport
from engine.service.imported_state import CODE_STEP, Decision, decide, onboarding_plan
from engine.service.student_import import SeedRow, adopt, place
from engine.sources import HOTMART_API_ITEMS as ITEMS
from engine.statuses import EventStatus


def hotmart_products(rules: Rules, keys: Iterable[str] = ()) -> list[Product]:
    """The products to import (``keys``, default every product that sells on Hotmart)."""
    keys = list(keys)
    for key in keys:
        if key not in rules.products:
            raise LookupError(f"unknown product {key!r} (products: {', '.join(rules.products)})")
        if not rules.products[key].source_ids.get(ITEMS.SOURCE_NAME):
            product = rules.products[key]
            raise LookupError(f"product {key!r} sells on no Hotmart product id ({product.file}: sources: hotmart:)")
    chosen = [rules.products[key] for key in keys] or list(rules.products.values())
    return [product for product in chosen if product.source_ids.get(ITEMS.SOURCE_NAME)]


def read_holdings(
    reader: HotmartReader, rules: Rules, products: list[Product], now: datetime, report: HotmartImport
) -> dict[tuple[str, str], ITEMS.Holding]:
    """Each buyer's best holding per product key, read from Hotmart: ``(email, product key) -> Holding``."""
    wanted = {product.key for product in products}
    kinds: dict[str, set[str]] = {}  # Hotmart product id -> the kinds of the products claiming it
    for product in products:
        for product_id in product.source_ids[ITEMS.SOURCE_NAME]:
            kinds.setdefault(product_id, set()).add(product.kind)
    best: dict[tuple[str, str], ITEMS.Holding] = {}
    for product_id, claimed in kinds.items():
        holdings = []
        if "subscription" in claimed:
            items = reader.subscriptions(
                product_id=product_id, statuses=ITEMS.HOLDING_STATUSES, accession_from=ITEMS.FULL_SCAN_FROM
            )
            holdings += [ITEMS.subscription(item, now) for item in items]
        if claimed - {"subscription"}:
            holdings += [
                ITEMS.sale(item) for item in reader.sales(product_id=product_id, start=ITEMS.FULL_SCAN_FROM, end=now)
            ]
        for holding in holdings:
            report.read += 1
            if not holding.usable:
                report.unusable.append(
                    f"{holding.kind} {holding.reference}: {'; '.join(holding.problems) or 'no history'}"
                )
                continue
            product = rules.product_for(ITEMS.SOURCE_NAME, holding.product_id, holding.offer_code)
            if product is None:
                report.unplaced[holding.product_id] += 1
                continue
            if product.key not in wanted:
                continue
            key = (holding.email, product.key)
            if key not in best or ITEMS.preference(holding) < ITEMS.preference(best[key]):
                best[key] = holding
    return best


def import_from_hotmart(
    rt: Runtime,
    reader: HotmartReader,
    *,
    product_keys: Iterable[str] = (),
    discord_ids: dict[str, SeedRow] | None = None,
    adopt_access: bool = False,
    onboard: bool = False,
    dry_run: bool = False,
    progress: Progress = no_progress,
) -> HotmartImport:
    """Read Hotmart, place every holding with access, report; see the module. ``discord_ids``: the
    rows of a CSV file by e-mail (:func:`engine.service.student_import.read_discord_ids`).
    Raises LookupError for an unknown product, and connectors' errors reading Hotmart."""
    rules = rt.rules.rules
    products = hotmart_products(rules, product_keys)
    now = rt.now()
    report = HotmartImport(dry_run=dry_run, onboard=onboard, products=[p.key for p in products])
    holdings = read_holdings(reader, rules, products, now, report)
    importer = _Importer(rt, report, discord_ids or {}, adopt_access=adopt_access, onboard=onboard, now=now)
    with rt.sessions() as session, progress("importing", len(holdings)) as step:
        for (email, key), holding in sorted(holdings.items()):
            step(1)
            lock_buyer_for_transaction(session, email)
            importer.one(session, rules.products[key], holding)
        report.discord_ids_unmatched = sorted(set(importer.discord_ids) - {email for email, _ in holdings})
        if report.errors or dry_run:
            session.rollback()
        else:
            session.commit()
    if report.errors:
        report.onboarding = []
    if not (report.errors or dry_run):
        for event_id in report.onboarding:
            rt.queue.enqueue(event_id)
    return report


class _Importer:
    """Places one holding at a time in the caller's transaction (which holds its buyer's lock)."""

    def __init__(
        self, rt: Runtime, report: HotmartImport, discord_ids: dict[str, SeedRow], *, adopt_access, onboard, now
    ):
        self.rt, self.report, self.discord_ids = rt, report, discord_ids
        self.adopt_access, self.onboard, self.now = adopt_access, onboard, now
        self.rules, self.planner = rt.rules.rules, rt.rules.planner
        self.access: dict[str, ProductAccess] = derive(self.rules)

    def one(self, session: Session, product: Product, holding: ITEMS.Holding) -> None:
        report, email = self.report, holding.email
        student = session.scalar(select(Student).where(Student.email == email))
        existing = student and session.scalar(
            select(Membership).where(Membership.student_id == student.id, Membership.product_key == product.key)
        )
        row = self.discord_ids.get(email)
        linked = bool((student and student.discord_id) or (row and row.discord_id))
        decision = self._decide(product, holding, linked=linked)
        if existing is not None:
            report.existing[product.key] += 1
            if self.onboard and decision.onboarding and self._awaits_onboarding(session, student, existing):
                self._queue_onboarding(session, student, existing, product, holding, decision)
            return
        if not decision.has_access:
            report.without_access[product.key][decision.state] += 1
            return
        placed = place(
            session,
            email=email,
            product_key=product.key,
            state=decision.state,
            name=holding.name or (row.name if row else None),
            phone=row.phone if row else None,
            discord_id=row.discord_id if row else None,
            now=self.now,
            detail={
                "source": ITEMS.SOURCE_NAME,
                "product": product.key,
                "state": decision.state,
                "hotmart_status": holding.status,
                "reference": holding.reference,
                "transitions": decision.transitions,
                "adopt_access": self.adopt_access,
                **snapshot(decision.grants if self.adopt_access else {}, decision.lifecycle_timers),
            },
        )
        report.students_created += placed.student_created
        if placed.error or placed.membership is None:
            report.errors.append(f"hotmart {holding.kind} {holding.reference} ({email}, {product.key}): {placed.error}")
            return
        membership = placed.membership
        membership.transaction, membership.subscriber_code = holding.transaction, holding.subscriber_code
        membership.paid_until = holding.paid_until
        report.count(product.key, decision.state, email)
        report.discord_ids_joined += bool(row and row.discord_id)
        for name, due in decision.lifecycle_timers.items():
            session.add(
                ScheduledEvent(
                    membership_id=membership.id,
                    event_type=name,
                    due_at=datetime.fromisoformat(due),
                    created_at=self.now,
                )
            )
            report.timers += 1
        if self.adopt_access:
            report.grants_recorded += adopt(session, self.rules, membership, decision.grants, self.now)
        if decision.onboarding is None:
            return
        if self.onboard:
            self._queue_onboarding(session, placed.student, membership, product, holding, decision)
            return
        plan = self._onboarding_plan(product, holding, decision)
        step = next(step for step in plan.steps if step.action == CODE_STEP)
        expires = datetime.fromisoformat(step.params["expires_at"])
        store_code(session, placed.student, membership, step.params["code"], expires, self.now)
        report.codes += 1

    def _decide(self, product: Product, holding: ITEMS.Holding, *, linked: bool) -> Decision:
        return decide(
            self.rules,
            self.planner,
            self.access[product.key],
            product,
            holding.history,
            linked=linked,
            email=holding.email,
            name=holding.name,
            now=self.now,
        )

    def _onboarding_plan(self, product: Product, holding: ITEMS.Holding, decision: Decision):
        return onboarding_plan(
            self.planner,
            product,
            decision.onboarding,
            email=holding.email,
            name=holding.name,
            now=self.now,
            code=new_code(),
        )

    @staticmethod
    def _awaits_onboarding(session: Session, student: Student, membership: Membership) -> bool:
        """An imported membership no event has moved since, of a student still unlinked."""
        imported = session.scalar(
            select(History.id).where(History.membership_id == membership.id, History.kind == IMPORTED).limit(1)
        )
        return imported is not None and membership.last_event_id is None and not student.discord_id

    def _queue_onboarding(
        self,
        session: Session,
        student: Student,
        membership: Membership,
        product: Product,
        holding: ITEMS.Holding,
        decision: Decision,
    ) -> None:
        """One event with the onboarding's steps, planned already (the worker runs them): once per membership."""
        dedupe = f"{IMPORT_SOURCE}:onboarding:{membership.id}"
        if session.scalar(select(Event.id).where(Event.dedupe_key == dedupe)) is not None:
            return
        plan = self._onboarding_plan(product, holding, decision)
        for step in plan.steps:
            connector = self.rt.connector_for(step.action)
            if isinstance(connector, DisabledConnector):
                raise OnboardingOff(
                    f"--onboard sends the onboarding ({step.action}) through {connector.name}, but "
                    f"{connector.flag} is off: it would be skipped, not sent. Turn it on first, or import "
                    "without --onboard and run the import again with --onboard once it is on"
                )
        fields = {**decision.onboarding.fields, "imported_from": ITEMS.SOURCE_NAME}
        event = Event(
            source=IMPORT_SOURCE,
            type=plan.event_type,
            dedupe_key=dedupe,
            # The shape of every internal event (engine.pipeline.intake.store_internal).
            payload={"event": plan.event_type, "product": product.key, "email": student.email, "fields": fields},
            occurred_at=self.now,
            received_at=self.now,
            enqueued_at=self.now,
            status=EventStatus.PROCESSING,  # planned: the worker runs the steps
            email=student.email,
            transaction=holding.transaction,
            student_id=student.id,
            product_key=product.key,
            plans=[{**plan.to_dict(), "membership_id": membership.id}],
            rules_version=self.rt.rules.version,
            correlation_id=uuid.uuid4().hex,
        )
        session.add(event)
        session.flush()
        session.add_all(planned_runs(event.id, membership.id, plan.steps, 0, self.now))
        self.report.onboarding.append(event.id)


class OnboardingOff(RuntimeError):
    """``onboard`` asked while a connector the onboarding needs is switched off."""
