"""Table-driven tests of the shipped ``rules/`` through the planner.

Each row: an event body (a reference Hotmart payload, a copy of one, or an internal event),
a starting state and the student's facts -> the transition, the state after, the ignore
reason and the ordered steps with their rendered parameters.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from engine.lifecycle.inputs import event_input
from engine.lifecycle.planner import ConditionTrace, Facts, Plan, Planner
from engine.rules import load_rules
from engine.sources.hotmart import HOTMART_EVENTS

ROOT = Path(__file__).resolve().parents[2]
from tests.conftest import REFERENCE  # noqa: E402

RULES = load_rules(ROOT / "rules")
PLANNER = Planner(RULES)

NOW = datetime(2025, 5, 10, 12, 0, tzinfo=UTC)  # before the cancellation's date_next_charge (05-20)
LATER = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)  # after it
TOKEN = "K7Q2M9XP"
ANA = "ana.exemplo@example.com"
DISCORD_OLD = "300000000000000001"
DISCORD_NEW = "300000000000000002"

R_COURSE = "1180000000000000001"
R_COMMUNITY = "1180000000000000002"
CURSO = "Workshop Exemplo de Automação"
COMUNIDADE = "Comunidade Exemplo (Assinatura)"


def iso(moment: datetime) -> str:
    return moment.isoformat()


@cache
def _reference(name: str) -> dict[str, Any]:
    return json.loads((REFERENCE / f"{name}.json").read_text(encoding="utf-8"))


def hotmart(name: str, product_id: int | None = None, **purchase: Any) -> dict[str, Any]:
    """A reference payload (a fresh copy), optionally for another product id / purchase fields."""
    body = copy.deepcopy(_reference(name))
    if product_id is not None:
        body["data"]["product"]["id"] = product_id
    for key, value in purchase.items():
        if value is None:
            body["data"]["purchase"].pop(key, None)
        else:
            body["data"]["purchase"][key] = value
    return body


def internal(event: str, product: str, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"event": event, "product": product, "email": ANA}
    if fields:
        body["fields"] = fields
    return body


def without_next_charge(name: str) -> dict[str, Any]:
    body = copy.deepcopy(_reference(name))
    body["data"].pop("date_next_charge", None)
    return body


def plan_for(
    body: dict[str, Any],
    state: str | None,
    *,
    linked: bool = False,
    now: datetime = NOW,
    discord_id: str | None = None,
    previous_discord_id: str | None = None,
    token: str | None = TOKEN,
    transaction: str | None = None,
) -> Plan:
    event = event_input(body, RULES)
    assert event.problems == []
    facts = Facts(
        now=now,
        discord_linked=linked,
        discord_id=discord_id or (DISCORD_OLD if linked else None),
        previous_discord_id=previous_discord_id,
        email=event.email or "",
        name=event.fields.get("name"),
        token=token,
        transaction=transaction,
    )
    return PLANNER.plan(event.event_type, event.fields, event.product, state, facts)


# --- expected step builders -----------------------------------------------------------------

FLOW_BASE = {"curso": 0, "comunidade": 10, "combo": 20}
FLOW_INDEX = {
    "onboarding": 1,
    "onboarding_reminder": 2,
    "welcome": 3,
    "refund": 4,
    "billet_reminder": 5,
    "payment_confirmed": 6,
    "payment_late": 7,
    "churn": 8,
}
ROLES = {"curso": [R_COURSE], "comunidade": [R_COMMUNITY], "combo": [R_COURSE, R_COMMUNITY]}
TAGS = {"curso": ["aluno-curso"], "comunidade": ["assinante"], "combo": ["aluno-curso", "assinante"]}
CLASSES = {"curso": ["curso-2026"], "comunidade": [], "combo": ["curso-2026"]}

Steps = list[tuple[str, dict[str, Any]]]


def flow(product: str, name: str) -> tuple[str, dict[str, Any]]:
    return "trigger_flow", {
        "flow": name,
        "flow_ns": f"content20261101000000_0000{FLOW_BASE[product] + FLOW_INDEX[name]:02d}",
    }


def onboarding_steps(product: str, now: datetime = NOW) -> Steps:
    return [
        ("issue_token", {"code": TOKEN, "expires_at": iso(now + timedelta(days=7))}),
        ("add_tag", {"tags": TAGS[product]}),
        ("set_field", {"field": "codigo_discord", "value": TOKEN}),
        flow(product, "onboarding"),
        ("schedule", {"event": "ONBOARDING_REMINDER", "due_at": iso(now + timedelta(hours=24))}),
        ("schedule", {"event": "TOKEN_EXPIRED", "due_at": iso(now + timedelta(days=7))}),
    ]


def grant_steps(product: str) -> Steps:
    return [
        ("add_tag", {"tags": TAGS[product]}),
        ("add_role", {"role_ids": ROLES[product]}),
        ("enroll", {"classes": CLASSES[product]}),
        flow(product, "welcome"),
    ]


def revoke_steps(product: str) -> Steps:
    return [
        ("cancel_timers", {"events": []}),
        ("revoke_token", {}),
        ("remove_role", {"role_ids": ROLES[product]}),
        ("remove_tag", {"tags": TAGS[product]}),
        ("unenroll", {"classes": CLASSES[product]}),
    ]


def churn_steps(product: str) -> Steps:
    return [
        ("cancel_timers", {"events": []}),
        ("remove_role", {"role_ids": ROLES[product]}),
        ("remove_tag", {"tags": TAGS[product]}),
        ("unenroll", {"classes": CLASSES[product]}),
        ("add_tag", {"tags": ["ex-assinante"]}),
        flow(product, "churn"),
    ]


def new_code_steps(product: str) -> Steps:
    return [
        ("issue_token", {"code": TOKEN, "expires_at": iso(NOW + timedelta(days=7))}),
        ("set_field", {"field": "codigo_discord", "value": TOKEN}),
        flow(product, "onboarding"),
    ]


# --- the table ----------------------------------------------------------------------------------


@dataclass
class Case:
    id: str
    body: dict[str, Any]
    state: str | None
    transition: str | None
    to_state: str
    steps: Steps = field(default_factory=list)
    ignored: str | None = None
    linked: bool = False
    now: datetime = NOW
    product: str | None = "curso"
    facts: dict[str, Any] = field(default_factory=dict)


REFUND_ALERT = "Pedido de reembolso (PURCHASE_PROTEST) de ana.exemplo@example.com em "
NO_GRACE = "no active subscription to put in grace"
NEVER_PAID = "payment did not go through; access was never granted"
ENGAGEMENT = "engagement event; no access change"

CASES = [
    # 1. first purchase, not linked: a code, the tag, the code in a field, the flow, two timers
    *(
        Case(
            f"approved-curso-from-{state}-not-linked",
            hotmart("purchase_approved"),
            state,
            "purchase_not_linked",
            "pending_onboarding",
            onboarding_steps("curso"),
        )
        for state in (None, "new", "pending_payment", "refunded", "churned")
    ),
    Case(
        "approved-comunidade-first-not-linked",
        hotmart("purchase_approved_subscription_first"),
        "new",
        "purchase_not_linked",
        "pending_onboarding",
        onboarding_steps("comunidade"),
        product="comunidade",
    ),
    # 2. already linked: straight to active, no code, no onboarding flow
    Case(
        "approved-curso-linked",
        hotmart("purchase_approved"),
        "new",
        "purchase_already_linked",
        "active",
        grant_steps("curso"),
        linked=True,
    ),
    Case(
        "approved-comunidade-linked",
        hotmart("purchase_approved_subscription_first"),
        "new",
        "purchase_already_linked",
        "active",
        grant_steps("comunidade"),
        linked=True,
        product="comunidade",
    ),
    # 17. buying again after a refund, linked
    Case(
        "approved-curso-after-refund-linked",
        hotmart("purchase_approved"),
        "refunded",
        "purchase_already_linked",
        "active",
        grant_steps("curso"),
        linked=True,
    ),
    # a second purchase while onboarding: a new code replaces the old one
    Case(
        "approved-while-onboarding",
        hotmart("purchase_approved"),
        "pending_onboarding",
        "new_purchase_while_onboarding",
        "pending_onboarding",
        new_code_steps("curso"),
    ),
    # linked already (DISCORD_LINKED is on its way): no second code
    Case(
        "approved-while-onboarding-linked",
        hotmart("purchase_approved"),
        "pending_onboarding",
        "renewal_while_onboarding",
        "pending_onboarding",
        [],
        linked=True,
    ),
    # 5. renewal while active: stays active, timers cancelled, no code
    *(
        Case(
            f"renewal-active-linked-{linked}",
            hotmart("purchase_approved_renewal"),
            "active",
            "renewal_or_repurchase",
            "active",
            [("cancel_timers", {"events": ["GRACE_EXPIRED", "ACCESS_ENDS"]})],
            linked=linked,
            product="comunidade",
        )
        for linked in (False, True)
    ),
    Case(
        "renewal-while-onboarding",
        hotmart("purchase_approved_renewal"),
        "pending_onboarding",
        "renewal_while_onboarding",
        "pending_onboarding",
        [],
        product="comunidade",
    ),
    # 6. paid within grace / re-subscribed before the end
    *(
        Case(
            f"renewal-from-{state}",
            hotmart("purchase_approved_renewal"),
            state,
            "paid_after_all",
            "active",
            [("cancel_timers", {"events": ["GRACE_EXPIRED", "ACCESS_ENDS"]}), flow("comunidade", "payment_confirmed")],
            product="comunidade",
        )
        for state in ("overdue", "cancelled")
    ),
    # 12. warranty over: not a grant
    *(
        Case(
            f"complete-from-{state}",
            hotmart("purchase_complete"),
            state,
            None,
            state,
            ignored="warranty period over; no access change",
            product="comunidade",
        )
        for state in ("new", "pending_onboarding", "active")
    ),
    Case(
        "complete-closes-dispute",
        hotmart("purchase_complete"),
        "disputed",
        "dispute_rejected",
        "active",
        product="comunidade",
    ),
    # 9. refund: revoke at once
    *(
        Case(
            f"refund-from-{state}",
            hotmart("purchase_refunded"),
            state,
            "refunded",
            "refunded",
            [*revoke_steps("curso"), flow("curso", "refund")],
        )
        for state in ("pending_onboarding", "active", "overdue", "cancelled", "disputed")
    ),
    Case(
        "refund-from-new",
        hotmart("purchase_refunded"),
        "new",
        None,
        "new",
        ignored="no transition for PURCHASE_REFUNDED from 'new' (product curso)",
    ),
    # 10. chargeback: as a refund (refund flow included), plus an admin alert
    *(
        Case(
            f"chargeback-from-{state}",
            hotmart("purchase_chargeback"),
            state,
            "chargeback",
            "refunded",
            [
                *revoke_steps("comunidade"),
                flow("comunidade", "refund"),
                ("alert", {"message": f"Chargeback de {ANA} em {COMUNIDADE} (transação HP20000000000002)."}),
            ],
            product="comunidade",
        )
        for state in ("active", "churned")
    ),
    # 11. dispute: flagged, access kept
    Case(
        "protest-active",
        hotmart("purchase_protest"),
        "active",
        "dispute_opened",
        "disputed",
        [("alert", {"message": REFUND_ALERT + CURSO + "; acesso mantido até a decisão."})],
    ),
    Case(
        "protest-onboarding",
        hotmart("purchase_protest"),
        "pending_onboarding",
        "dispute_noted",
        "pending_onboarding",
        [("alert", {"message": REFUND_ALERT + CURSO + "; estado mantido."})],
    ),
    # a dispute keeps a cancellation (and its ACCESS_ENDS timer)
    Case(
        "protest-cancelled",
        hotmart("purchase_protest", 2222222),
        "cancelled",
        "dispute_noted",
        "cancelled",
        [("alert", {"message": REFUND_ALERT + COMUNIDADE + "; estado mantido."})],
        product="comunidade",
    ),
    # 6./7. late payment: overdue, flow, grace timer at now + 7 d
    Case(
        "delayed-active",
        hotmart("purchase_delayed"),
        "active",
        "payment_late",
        "overdue",
        [
            flow("comunidade", "payment_late"),
            ("schedule", {"event": "GRACE_EXPIRED", "due_at": iso(NOW + timedelta(days=7))}),
        ],
        product="comunidade",
    ),
    Case(
        "delayed-overdue",
        hotmart("purchase_delayed"),
        "overdue",
        None,
        "overdue",
        ignored=NO_GRACE,
        product="comunidade",
    ),
    Case("delayed-one-time-product", hotmart("purchase_delayed", 1111111), "active", None, "active", ignored=NO_GRACE),
    # 8. cancellation: paid period kept until date_next_charge, or churned now if it is past
    *(
        Case(
            f"cancellation-future-from-{state}",
            hotmart("subscription_cancellation"),
            state,
            "cancelled_keeps_paid_period",
            "cancelled",
            [
                ("cancel_timers", {"events": ["GRACE_EXPIRED"]}),
                ("schedule", {"event": "ACCESS_ENDS", "due_at": "2025-05-20T12:00:00+00:00"}),
            ],
            product="comunidade",
        )
        for state in ("active", "overdue", "pending_onboarding")
    ),
    Case(
        "cancellation-past",
        hotmart("subscription_cancellation"),
        "active",
        "cancelled_after_paid_period",
        "churned",
        churn_steps("comunidade"),
        now=LATER,
        product="comunidade",
    ),
    Case(
        "cancellation-without-date",
        without_next_charge("subscription_cancellation"),
        "active",
        "cancelled_after_paid_period",
        "churned",
        churn_steps("comunidade"),
        product="comunidade",
    ),
    Case(
        "cancellation-one-time-product",
        hotmart("subscription_cancellation", 1111111),
        "active",
        None,
        "active",
        ignored="no transition for SUBSCRIPTION_CANCELLATION from 'active' (product curso)",
    ),
    # 18. never paid
    *(
        Case(
            f"billet-from-{state}",
            hotmart("purchase_billet_printed"),
            state,
            "waiting_for_payment",
            "pending_payment",
            [flow("curso", "billet_reminder")],
        )
        for state in ("new", "refunded", "churned")
    ),
    Case(
        "billet-while-active",
        hotmart("purchase_billet_printed"),
        "active",
        None,
        "active",
        ignored="a boleto/PIX was generated for a student who already has a purchase in progress",
    ),
    Case("expired-pending-payment", hotmart("purchase_expired"), "pending_payment", "never_paid", "new"),
    Case("expired-new", hotmart("purchase_expired"), "new", None, "new", ignored=NEVER_PAID),
    Case("canceled-pending-payment", hotmart("purchase_canceled"), "pending_payment", "never_paid", "new"),
    Case("canceled-active", hotmart("purchase_canceled"), "active", None, "active", ignored=NEVER_PAID),
    # deliberately ignored events
    Case(
        "cart-abandoned",
        hotmart("purchase_out_of_shopping_cart"),
        "new",
        None,
        "new",
        ignored="abandoned checkout (a lead); never grants access",
    ),
    Case(
        "switch-plan",
        hotmart("switch_plan"),
        "active",
        None,
        "active",
        ignored="plans of one product grant the same access",
        product="comunidade",
    ),
    Case(
        "charge-date",
        hotmart("update_subscription_charge_date"),
        "active",
        None,
        "active",
        ignored="billing day changed; the paid-until date is updated, access unchanged",
        product="comunidade",
    ),
    Case(
        "club-first-access",
        hotmart("club_first_access"),
        "active",
        None,
        "active",
        ignored=ENGAGEMENT,
        product="comunidade",
    ),
    Case(
        "club-module-completed",
        hotmart("club_module_completed"),
        "active",
        None,
        "active",
        ignored=ENGAGEMENT,
        product="comunidade",
    ),
    # B: the bundle (3333333) grants both roles, both tags and the class
    Case(
        "combo-approved-not-linked",
        hotmart("purchase_approved_subscription_first", 3333333),
        "new",
        "purchase_not_linked",
        "pending_onboarding",
        onboarding_steps("combo"),
        product="combo",
    ),
    Case(
        "combo-approved-linked",
        hotmart("purchase_approved_subscription_first", 3333333),
        "new",
        "purchase_already_linked",
        "active",
        grant_steps("combo"),
        linked=True,
        product="combo",
    ),
    Case(
        "combo-refunded",
        hotmart("purchase_refunded", 3333333),
        "active",
        "refunded",
        "refunded",
        [*revoke_steps("combo"), flow("combo", "refund")],
        product="combo",
    ),
    Case(
        "combo-delayed",
        hotmart("purchase_delayed", 3333333),
        "active",
        "payment_late",
        "overdue",
        [
            flow("combo", "payment_late"),
            ("schedule", {"event": "GRACE_EXPIRED", "due_at": iso(NOW + timedelta(days=7))}),
        ],
        product="combo",
    ),
    # internal events
    Case(
        "linked",
        internal("DISCORD_LINKED", "curso"),
        "pending_onboarding",
        "linked",
        "active",
        [
            ("cancel_timers", {"events": ["ONBOARDING_REMINDER", "TOKEN_EXPIRED"]}),
            ("add_role", {"role_ids": [R_COURSE]}),
            ("enroll", {"classes": ["curso-2026"]}),
            flow("curso", "welcome"),
        ],
        linked=True,
    ),
    # 25. relink: roles move from the previous account to the new one
    *(
        Case(
            f"relinked-from-{state}",
            internal("DISCORD_LINKED", "combo"),
            state,
            "relinked",
            state,
            [
                ("remove_role", {"role_ids": [R_COURSE, R_COMMUNITY], "discord_id": DISCORD_OLD}),
                ("add_role", {"role_ids": [R_COURSE, R_COMMUNITY]}),
            ],
            linked=True,
            product="combo",
            facts={"discord_id": DISCORD_NEW, "previous_discord_id": DISCORD_OLD},
        )
        for state in ("active", "overdue", "cancelled", "disputed")
    ),
    Case(
        "linked-again-same-account",
        internal("DISCORD_LINKED", "curso"),
        "active",
        None,
        "active",
        ignored="no transition for DISCORD_LINKED from 'active' (product curso)",
        linked=True,
        facts={"discord_id": DISCORD_OLD, "previous_discord_id": DISCORD_OLD},
    ),
    # cancelled during onboarding, then linked: access for the rest of the paid period
    Case(
        "linked-after-cancelling",
        internal("DISCORD_LINKED", "comunidade"),
        "cancelled",
        "linked_after_cancelling",
        "cancelled",
        [
            ("cancel_timers", {"events": ["ONBOARDING_REMINDER", "TOKEN_EXPIRED"]}),
            ("add_role", {"role_ids": [R_COMMUNITY]}),
            ("enroll", {"classes": []}),
            flow("comunidade", "welcome"),
        ],
        linked=True,
        product="comunidade",
        facts={"discord_id": DISCORD_NEW},
    ),
    # 24. rejoined the server: roles back
    Case(
        "member-joined",
        internal("MEMBER_JOINED", "comunidade"),
        "overdue",
        "rejoined",
        "overdue",
        [("add_role", {"role_ids": [R_COMMUNITY]})],
        linked=True,
        product="comunidade",
    ),
    Case(
        "member-joined-churned",
        internal("MEMBER_JOINED", "comunidade"),
        "churned",
        None,
        "churned",
        ignored="no transition for MEMBER_JOINED from 'churned' (product comunidade)",
        linked=True,
        product="comunidade",
    ),
    # 3. never finishes onboarding
    Case(
        "onboarding-reminder",
        internal("ONBOARDING_REMINDER", "curso"),
        "pending_onboarding",
        "onboarding_reminder",
        "pending_onboarding",
        [flow("curso", "onboarding_reminder")],
    ),
    Case(
        "onboarding-reminder-after-link",
        internal("ONBOARDING_REMINDER", "curso"),
        "active",
        None,
        "active",
        ignored="no transition for ONBOARDING_REMINDER from 'active' (product curso)",
    ),
    Case(
        "token-expired",
        internal("TOKEN_EXPIRED", "curso"),
        "pending_onboarding",
        "code_expired",
        "pending_onboarding",
        [
            *new_code_steps("curso"),
            ("schedule", {"event": "TOKEN_EXPIRED", "due_at": iso(NOW + timedelta(days=7))}),
            ("alert", {"message": f"{ANA} não concluiu o onboarding de {CURSO} em 7 dias; novo código enviado."}),
        ],
    ),
    # 7. grace over, never paid
    Case(
        "grace-expired",
        internal("GRACE_EXPIRED", "comunidade"),
        "overdue",
        "grace_over",
        "churned",
        churn_steps("comunidade"),
        product="comunidade",
    ),
    Case(
        "grace-expired-one-time",
        internal("GRACE_EXPIRED", "curso"),
        "overdue",
        None,
        "overdue",
        ignored="no transition for GRACE_EXPIRED from 'overdue' (product curso)",
    ),
    Case(
        "access-ends",
        internal("ACCESS_ENDS", "combo"),
        "cancelled",
        "paid_period_over",
        "churned",
        churn_steps("combo"),
        product="combo",
    ),
    Case(
        "access-ends-after-resubscribe",
        internal("ACCESS_ENDS", "comunidade"),
        "active",
        None,
        "active",
        ignored="no transition for ACCESS_ENDS from 'active' (product comunidade)",
        product="comunidade",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_rule_table(case: Case) -> None:
    plan = plan_for(case.body, case.state, linked=case.linked, now=case.now, **case.facts)
    assert plan.product == case.product
    assert plan.from_state == (case.state or "new")
    assert plan.transition == case.transition
    assert plan.to_state == case.to_state
    assert plan.ignored_reason == case.ignored
    assert [(s.action, s.params) for s in plan.steps] == case.steps


def test_case_ids_are_unique() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))


def test_every_reference_payload_is_in_the_table() -> None:
    used = {c.body.get("event") for c in CASES}
    for path in REFERENCE.glob("*.json"):
        assert json.loads(path.read_text(encoding="utf-8"))["event"] in used, path.name


# --- conditions, placeholders, odd inputs ------------------------------------------------------


def test_condition_trace_lists_each_rule_tried_in_order() -> None:
    plan = plan_for(hotmart("purchase_approved"), "new", linked=True)
    assert plan.conditions == [
        ConditionTrace("purchase_not_linked", "discord_linked", required=False, value=True),
        ConditionTrace("purchase_already_linked", "discord_linked", required=True, value=True),
    ]
    assert [c.passed for c in plan.conditions] == [False, True]


def test_named_predicate_reads_recurrence_number() -> None:
    first = plan_for(hotmart("purchase_approved_subscription_first"), "pending_onboarding")
    renewal = plan_for(hotmart("purchase_approved_renewal"), "pending_onboarding")
    assert first.transition == "new_purchase_while_onboarding"
    assert first.conditions == [
        ConditionTrace("new_purchase_while_onboarding", "(is_renewal or discord_linked)", required=False, value=False)
    ]
    assert renewal.transition == "renewal_while_onboarding"
    assert [(c.transition, c.value, c.passed) for c in renewal.conditions] == [
        ("new_purchase_while_onboarding", True, False),
        ("renewal_while_onboarding", True, True),
    ]


def test_recurrence_as_string_still_counts_as_renewal() -> None:
    plan = plan_for(hotmart("purchase_approved_renewal", recurrence_number="3"), "pending_onboarding")
    assert plan.transition == "renewal_while_onboarding"


def test_without_a_token_the_placeholder_is_rendered() -> None:
    plan = plan_for(hotmart("purchase_approved"), "new", token=None)
    params = {s.action: s.params for s in plan.steps}
    assert params["issue_token"]["code"] == "{token}"
    assert params["set_field"]["value"] == "{token}"


def test_cancellation_date_exactly_now_counts_as_passed() -> None:
    plan = plan_for(hotmart("subscription_cancellation"), "active", now=datetime(2025, 5, 20, 12, 0, tzinfo=UTC))
    assert plan.transition == "cancelled_after_paid_period"
    assert plan.conditions[0].condition == "date_next_charge_passed"
    assert plan.conditions[0].value is True


@pytest.mark.parametrize(
    ("membership_transaction", "event_transaction", "closes"),
    [
        ("HP10000000000001", "HP10000000000001", True),  # the disputed purchase's own warranty
        ("HP10000000000001", "HP10000000000099", False),  # another purchase's
        (None, "HP10000000000099", True),  # the membership's unknown (imported): as before the predicate
        ("HP10000000000001", None, True),  # the event names none
    ],
)
def test_same_transaction_compares_the_event_with_the_membership(
    membership_transaction, event_transaction, closes
) -> None:
    body = hotmart("purchase_complete", 1111111, transaction=event_transaction)
    plan = plan_for(body, "disputed", linked=True, transaction=membership_transaction)
    assert (plan.transition == "dispute_rejected") is closes
    assert [(c.condition, c.value) for c in plan.conditions] == [("same_transaction", closes)]


def test_unknown_product_id_is_ignored_with_its_id() -> None:
    plan = plan_for(hotmart("purchase_approved", 9999999), "new")
    assert plan.product is None
    assert plan.transition is None
    assert plan.ignored_reason == "no product matches id 9999999"
    assert plan.steps == []


def test_hotmart_test_event_is_ignored() -> None:
    body = hotmart("purchase_approved", 0)
    event = event_input(body, RULES)
    assert event.fields["is_test"] is True
    plan = PLANNER.plan(event.event_type, event.fields, event.product, "new", Facts(now=NOW))
    assert plan.ignored_reason == "Hotmart test event (product id 0)"
    assert plan.steps == []


def test_internal_event_for_an_undefined_product_is_ignored() -> None:
    event = event_input(internal("GRACE_EXPIRED", "nope"), RULES)
    assert event.problems == ["product 'nope' is not defined in the rules"]
    plan = PLANNER.plan(event.event_type, event.fields, event.product, "overdue", Facts(now=NOW))
    assert plan.product is None
    assert plan.ignored_reason.startswith("no product matches id")


def test_internal_event_with_malformed_fields_does_not_crash() -> None:
    event = event_input({"event": "DISCORD_LINKED", "product": "curso", "email": 5, "fields": [1, 2]}, RULES)
    assert event.problems == ["fields: expected an object", "email: expected a string"]
    assert event.email is None
    assert event.fields == {"event_type": "DISCORD_LINKED"}


def test_unknown_event_type_is_ignored() -> None:
    plan = plan_for(internal("SUBSCRIPTION_RENEWED", "comunidade"), "active")
    assert plan.ignored_reason == "unknown event type 'SUBSCRIPTION_RENEWED'"


def test_unknown_state_is_ignored() -> None:
    plan = plan_for(hotmart("purchase_approved"), "frozen")
    assert plan.ignored_reason == "membership is in unknown state 'frozen'"
    assert plan.to_state == "frozen"


def test_cancelled_during_onboarding_links_then_loses_access_when_the_period_ends() -> None:
    """Scenario 8 for a student who cancels before typing the code."""
    approved = plan_for(hotmart("purchase_approved_subscription_first"), "new")
    cancelled = plan_for(hotmart("subscription_cancellation"), approved.to_state)
    linked = plan_for(internal("DISCORD_LINKED", "comunidade"), cancelled.to_state, linked=True)
    ended = plan_for(internal("ACCESS_ENDS", "comunidade"), linked.to_state, linked=True)
    assert [p.transition for p in (approved, cancelled, linked, ended)] == [
        "purchase_not_linked",
        "cancelled_keeps_paid_period",
        "linked_after_cancelling",
        "paid_period_over",
    ]
    assert [p.to_state for p in (approved, cancelled, linked, ended)] == [
        "pending_onboarding",
        "cancelled",
        "cancelled",
        "churned",
    ]
    assert ("add_role", {"role_ids": [R_COMMUNITY]}) in [(s.action, s.params) for s in linked.steps]
    assert ("remove_role", {"role_ids": [R_COMMUNITY]}) in [(s.action, s.params) for s in ended.steps]


def test_one_planner_serves_many_memberships() -> None:
    body = hotmart("purchase_refunded")
    plans = [plan_for(body, state) for state in ("active", "new", "disputed", "new")]
    assert [p.to_state for p in plans] == ["refunded", "new", "refunded", "new"]


# --- every Hotmart event has a deliberate outcome ----------------------------------------------


def test_every_hotmart_event_has_a_transition_or_an_ignore_reason_in_the_rules() -> None:
    with_transition = {event for rule in RULES.transitions for event in rule.events}
    for event in sorted(HOTMART_EVENTS):
        assert event in with_transition or RULES.ignore.get(event), event


def _synthetic(event: str, product_id: int) -> dict[str, Any]:
    return {
        "id": f"synthetic-{event}",
        "event": event,
        "version": "2.0.0",
        "creation_date": 1746878400000,
        "data": {"product": {"id": product_id}, "buyer": {"email": ANA}, "purchase": {"recurrence_number": 2}},
    }


@pytest.mark.parametrize("event", sorted(HOTMART_EVENTS))
def test_every_hotmart_event_gets_a_transition_or_reason_from_every_state(event: str) -> None:
    fired = set()
    for product_id in (1111111, 2222222, 3333333):
        for state in RULES.states:
            plan = plan_for(_synthetic(event, product_id), state)
            assert plan.product is not None
            assert plan.transition or plan.ignored_reason, (product_id, state)
            assert not (plan.transition and plan.ignored_reason)
            if plan.transition:
                fired.add(plan.transition)
            elif event in RULES.ignore:
                assert plan.ignored_reason == RULES.ignore[event]
    assert fired or event in RULES.ignore
