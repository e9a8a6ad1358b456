"""One end-to-end test per lifecycle story of shared/SCENARIOS.md, 1 to 27 and 29 (the others'
tests are named ``test_story_NN_`` in their own files: docs/architecture/tests.md lists them).

Most stories run in one process (see ``tests/e2e/scenario_fixtures.py``): the fake Discord
and ManyChat servers in threads, the REAL connectors talking HTTP to them, the pipeline on
the real PostgreSQL with a controllable clock, webhooks through the FastAPI app and
``/registrar`` through the bot's ``LinkService``. Stories 15, 26 and 27 run the deployed
shape (``engine serve`` + ``engine worker`` processes on PostgreSQL and Redis).

Assertions are what a course operator sees: member roles in the fake guild, tags, fields
and flows of Ana's ManyChat contact, class enrollments, memberships, events, alerts (rows
and admin-channel messages) and the bot's replies (the texts of rules/onboarding.yaml).
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select

from engine.db.models import (
    ActionRun,
    Event,
    Grant,
    History,
    Membership,
    OnboardingToken,
    ScheduledEvent,
    Student,
)
from engine.db.session import session_factory
from engine.onboarding.codes import new_code
from engine.onboarding.linking import LinkService
from engine.pipeline.processing import process_event
from engine.pipeline.rules_repository import RulesRepository
from engine.pipeline.runtime import build_connectors
from engine.pipeline.sweep import release_held, sweep
from engine.settings import Settings
from tests.conftest import HOTTOK, REFERENCE, RULES, load_payload
from tests.e2e.conftest import remote_enqueue
from tests.e2e.scenario_fixtures import (
    ANA_DISCORD,
    ANA_EMAIL,
    BUNDLE_ID,
    COMMUNITY_ROLE,
    COURSE_ID,
    COURSE_ROLE,
    FAKE_TOKEN,
    VIP_ROLE,
    World,
    epoch_ms,
    hotmart,
    open_world,
    seed_ana,
)
from tests.pipeline.test_rules_fit import rename_overdue, states_line

ANA_SECOND_ACCOUNT = "80351110224678999"
APPROVED = "purchase_approved"  # C, HP10000000000001, created 2025-03-03
REFUNDED = "purchase_refunded"  # C, same transaction, created 2025-03-07
SUB_FIRST = "purchase_approved_subscription_first"  # S, recurrence 1, created 2025-01-15


@pytest.fixture
def make_world(make_harness):
    with ExitStack() as stack:
        yield lambda **options: stack.enter_context(open_world(make_harness, **options))


@pytest.fixture
def world(make_world) -> World:
    return make_world()


def onboard(w: World, payload_name: str = APPROVED, **changes) -> str:
    """Ana buys (not linked yet) and types the code ManyChat sent her; the code."""
    w.deliver(hotmart(payload_name, new_id=False, **changes))
    code = w.code()
    assert w.register(code).outcome == "linked"
    return code


def later(payload: dict, after: dict | int, ms: int = 1000) -> dict:
    """``payload`` created ``ms`` after ``after`` (a payload or an epoch in ms)."""
    base = after if isinstance(after, int) else after["creation_date"]
    payload["creation_date"] = base + ms
    return payload


# -- Onboarding and access ---------------------------------------------------------------------


def test_story_01_first_purchase(world: World):
    """PURCHASE_APPROVED(C) -> pending_onboarding, an 8-character code; ManyChat: tag
    `aluno-curso` added, the code set in a custom field, then the onboarding flow.
    `/registrar codigo:<code>` -> DISCORD_LINKED -> active: R_course added, class enrolled,
    flow welcome. The code can't be used again."""
    w = world
    event_id = w.deliver(hotmart(APPROVED, new_id=False))
    assert w.event(event_id).status == "processed"
    assert w.states() == {"curso": "pending_onboarding"}
    [token] = w.tokens()
    assert len(token.code) == 8
    sub = w.subscriber()
    assert sub.tags == {"aluno-curso"}
    assert sub.fields["codigo_discord"] == token.code
    # Tag, then the code in the field, then the flow that shows it.
    assert w.manychat_writes() == ["addTagByName", "setCustomFieldByName", "sendFlow"]
    assert w.flows() == [("curso", "onboarding")]
    assert w.roles() == set() and w.classes() == set()

    outcome = w.register(f" {token.code.lower()} ")
    assert (outcome.outcome, outcome.reply) == ("linked", w.reply("linked"))
    assert w.event(outcome.event_id).status == "processed"
    assert w.states() == {"curso": "active"}
    assert w.roles() == {COURSE_ROLE}
    assert w.classes() == {"curso-2026"}
    assert w.flows() == [("curso", "onboarding"), ("curso", "welcome")]
    assert w.student().discord_id == ANA_DISCORD

    # Used: another account is refused; Ana again gets "linked" but nothing happens again.
    w.discord.add_member(ANA_SECOND_ACCOUNT)
    other = w.register(token.code, user=ANA_SECOND_ACCOUNT)
    assert (other.outcome, other.reply, other.event_id) == ("used_code", w.reply("used_code"), None)
    again = w.register(token.code)
    assert (again.outcome, again.event_id) == ("linked", None)
    assert len(w.events("DISCORD_LINKED")) == 1
    assert w.roles(ANA_SECOND_ACCOUNT) == set()
    assert w.student().discord_id == ANA_DISCORD
    assert w.flows() == [("curso", "onboarding"), ("curso", "welcome")]


def test_story_02_already_linked(world: World):
    """Ana (linked) buys S -> S goes straight to `active`: R_community added, no code, no
    onboarding flow."""
    w = world
    onboard(w)
    tokens_before = len(w.tokens())
    event_id = w.deliver(hotmart(SUB_FIRST, new_id=False))
    assert w.event(event_id).status == "processed"
    assert w.states() == {"curso": "active", "comunidade": "active"}
    assert w.roles() == {COURSE_ROLE, COMMUNITY_ROLE}
    assert "assinante" in w.subscriber().tags
    assert len(w.tokens()) == tokens_before  # no code
    community_flows = [flow for product, flow in w.flows() if product == "comunidade"]
    assert community_flows == ["welcome"]  # no onboarding flow


def test_story_03_never_finishes_onboarding(world: World):
    """24 h after the code: flow onboarding-reminder, once. The admin API lists Ana under
    `stuck_days=1`. At 7 days the code expires: the rules issue a new code, send it again
    and alert an admin."""
    w = world
    w.deliver(hotmart(APPROVED, new_id=False))
    first_code = w.code()

    def stuck() -> list[str]:
        response = w.admin("GET", "/admin/students", params={"stuck_days": 1})
        assert response.status_code == 200
        return [item["email"] for item in response.json()["items"]]

    w.clock.advance(hours=23)
    assert w.fire_timers() == []
    assert stuck() == []
    w.clock.advance(hours=1, seconds=1)
    assert len(w.fire_timers()) == 1
    assert w.flows() == [("curso", "onboarding"), ("curso", "onboarding_reminder")]
    assert stuck() == [ANA_EMAIL]
    w.clock.advance(hours=12)
    assert w.fire_timers() == []  # the reminder went once

    w.clock.advance(days=6)  # 7 days and 1 s after the purchase
    assert len(w.fire_timers()) == 1
    new_code = w.code()
    assert new_code != first_code and len(new_code) == 8
    assert w.flows() == [("curso", "onboarding"), ("curso", "onboarding_reminder"), ("curso", "onboarding")]
    assert w.states() == {"curso": "pending_onboarding"}
    assert stuck() == [ANA_EMAIL]
    expected = w.rule_alert("code_expired", "curso")
    assert [a.message for a in w.alerts()] == [expected]
    assert any(expected in message for message in w.channel())
    # The old code is dead, the new one links.
    assert w.register(first_code).outcome == "expired_code"
    assert w.register(new_code).outcome == "linked"
    assert w.states() == {"curso": "active"} and w.roles() == {COURSE_ROLE}
    assert stuck() == []


def test_story_04_wrong_or_stale_code(world: World):
    """An unknown code gets a pt-BR reply and no change; an expired code says how to get a
    new one; after 5 failed tries in 10 minutes the bot asks Ana to wait."""
    w = world
    w.deliver(hotmart(APPROVED, new_id=False))
    first_code = w.code()
    w.clock.advance(days=7, seconds=1)
    w.fire_timers()  # TOKEN_EXPIRED: a new code is sent, the first one is dead
    valid_code = w.code()
    assert valid_code != first_code
    requests_before = len(w.discord.requests), len(w.manychat.requests)

    unknown = w.register("ZZZZ2222")
    assert (unknown.outcome, unknown.reply, unknown.event_id) == ("unknown_code", w.reply("unknown_code"), None)
    assert w.register("abc").outcome == "unknown_code"  # malformed: same reply
    expired = w.register(first_code)
    assert (expired.outcome, expired.reply, expired.event_id) == ("expired_code", w.reply("expired_code"), None)
    assert w.register("ZZZZ3333").outcome == "unknown_code"
    assert w.register("ZZZZ4444").outcome == "unknown_code"  # the 5th failure
    # Even the right code now waits.
    wait = w.register(valid_code)
    assert (wait.outcome, wait.reply, wait.event_id) == ("too_many_attempts", w.reply("too_many_attempts"), None)
    # No change anywhere.
    assert w.states() == {"curso": "pending_onboarding"}
    assert w.events("DISCORD_LINKED") == []
    assert w.student().discord_id is None
    assert (len(w.discord.requests), len(w.manychat.requests)) == requests_before

    w.clock.advance(minutes=10, seconds=1)
    linked = w.register(valid_code)
    assert (linked.outcome, linked.reply) == ("linked", w.reply("linked"))
    assert w.states() == {"curso": "active"} and w.roles() == {COURSE_ROLE}


# -- Renewals, late payments, cancellation -----------------------------------------------------


def test_story_05_renewal(world: World):
    """PURCHASE_APPROVED(S, recurrence_number=3) while `active` -> stays `active`; no code, no
    onboarding; a pending grace timer for S is cancelled. (No event leaves a GRACE_EXPIRED
    pending on an active membership in the shipped rules, so the test puts one there, as a
    leftover timer would be.)"""
    w = world
    onboard(w, SUB_FIRST)
    membership = w.membership("comunidade")
    leftover_due = w.clock() + timedelta(days=3)
    with w.runtime.sessions.begin() as session:
        session.add(ScheduledEvent(membership_id=membership.id, event_type="GRACE_EXPIRED", due_at=leftover_due))
    tokens, flows, writes = len(w.tokens()), w.flows(), w.manychat_writes()

    renewal = hotmart("purchase_approved_renewal", new_id=False)
    assert renewal["data"]["purchase"]["recurrence_number"] == 3
    event_id = w.deliver(renewal)
    assert w.event(event_id).status == "processed"
    assert w.states() == {"comunidade": "active"}
    assert len(w.tokens()) == tokens  # no code
    assert w.flows() == flows and w.manychat_writes() == writes  # no onboarding, nothing re-sent
    assert w.roles() == {COMMUNITY_ROLE}
    assert ("GRACE_EXPIRED", "cancelled", leftover_due) in w.timers("comunidade")
    paid_until = datetime.fromtimestamp(renewal["data"]["purchase"]["date_next_charge"] / 1000, UTC)
    assert w.membership("comunidade").paid_until == paid_until
    w.clock.advance(days=4)
    assert w.fire_timers() == []
    assert w.states() == {"comunidade": "active"} and w.roles() == {COMMUNITY_ROLE}


def test_story_06_late_payment_then_paid(world: World):
    """PURCHASE_DELAYED(S) -> `overdue`, access kept, flow payment-late, a GRACE_EXPIRED timer
    7 days on. PURCHASE_APPROVED(S) within grace -> `active`, timer cancelled."""
    w = world
    onboard(w, SUB_FIRST)
    delayed = hotmart("purchase_delayed", new_id=False)
    w.deliver(delayed)
    assert w.states() == {"comunidade": "overdue"}
    assert w.roles() == {COMMUNITY_ROLE} and "assinante" in w.subscriber().tags  # access kept
    assert w.flows()[-1] == ("comunidade", "payment_late")
    assert [t for t in w.timers("comunidade") if t[1] == "pending"] == [
        ("GRACE_EXPIRED", "pending", w.clock() + timedelta(days=7))
    ]

    w.clock.advance(days=3)
    paid = later(hotmart("purchase_approved_renewal", transaction="HP20000000000005", recurrence_number=4), delayed)
    w.deliver(paid)
    assert w.states() == {"comunidade": "active"}
    assert ("GRACE_EXPIRED", "cancelled") in [t[:2] for t in w.timers("comunidade")]
    assert w.flows()[-1] == ("comunidade", "payment_confirmed")
    w.clock.advance(days=5)
    assert w.fire_timers() == []
    assert w.states() == {"comunidade": "active"} and w.roles() == {COMMUNITY_ROLE}


def test_story_07_late_payment_never_paid(world: World):
    """GRACE_EXPIRED fires -> `churned`: R_community removed, tag `assinante` removed, an
    alumni tag added, flow churn."""
    w = world
    onboard(w, SUB_FIRST)
    w.deliver(hotmart("purchase_delayed", new_id=False))
    w.clock.advance(days=7, seconds=-60)
    assert w.fire_timers() == []
    assert w.roles() == {COMMUNITY_ROLE}  # still within grace
    w.clock.advance(seconds=61)
    [fired] = w.fire_timers()
    assert w.event(fired).type == "GRACE_EXPIRED" and w.event(fired).status == "processed"
    assert w.states() == {"comunidade": "churned"}
    assert w.roles() == set()
    assert w.subscriber().tags == {"ex-assinante"}
    assert w.flows()[-1] == ("comunidade", "churn")
    assert [flow for _, flow in w.flows()].count("churn") == 1
    assert {g for g in w.grants() if g[1] == "discord_role"} == set()


def test_story_08_cancellation_keeps_the_paid_period(world: World):
    """SUBSCRIPTION_CANCELLATION(S) with `date_next_charge` 12 days ahead -> access kept; an
    ACCESS_ENDS timer for that date; when it fires -> `churned` as in 7. If Ana subscribes
    again before then, the timer is cancelled. If the date is already past, access ends now."""
    w = world
    cancellation = hotmart("subscription_cancellation", new_id=False)
    paid_until = datetime.fromtimestamp(cancellation["data"]["date_next_charge"] / 1000, UTC)
    w.clock.now = paid_until - timedelta(days=12)
    onboard(w, SUB_FIRST)

    # Cancelled 12 days before the paid-until date: access kept, the end is scheduled.
    w.deliver(cancellation)
    assert w.states() == {"comunidade": "cancelled"}
    assert w.roles() == {COMMUNITY_ROLE} and "assinante" in w.subscriber().tags
    assert ("ACCESS_ENDS", "pending", paid_until) in w.timers("comunidade")

    # She subscribes again before the end: the timer is cancelled, access never stops.
    again = later(hotmart("purchase_approved_renewal", transaction="HP20000000000009"), cancellation)
    w.deliver(again)
    assert w.states() == {"comunidade": "active"}
    assert ("ACCESS_ENDS", "cancelled", paid_until) in w.timers("comunidade")
    w.clock.now = paid_until + timedelta(days=1)
    assert w.fire_timers() == []
    assert w.roles() == {COMMUNITY_ROLE}

    # Cancelled again, 12 days ahead; this time the date comes: churned as in story 7.
    ends = w.clock() + timedelta(days=12)
    second = later(hotmart("subscription_cancellation", date_next_charge=epoch_ms(ends)), again)
    w.deliver(second)
    assert w.states() == {"comunidade": "cancelled"} and w.roles() == {COMMUNITY_ROLE}
    w.clock.now = ends - timedelta(seconds=1)
    assert w.fire_timers() == []
    w.clock.now = ends
    [fired] = w.fire_timers()
    assert w.event(fired).type == "ACCESS_ENDS"
    assert w.states() == {"comunidade": "churned"}
    assert w.roles() == set()
    assert w.subscriber().tags == {"ex-assinante"}
    assert w.flows()[-1] == ("comunidade", "churn")

    # Back again (already linked: active at once), then a cancellation whose date is past.
    back = later(hotmart("purchase_approved_renewal", transaction="HP20000000000010"), second)
    w.deliver(back)
    assert w.states() == {"comunidade": "active"} and w.roles() == {COMMUNITY_ROLE}
    past = later(hotmart("subscription_cancellation", date_next_charge=epoch_ms(w.clock() - timedelta(days=1))), back)
    w.deliver(past)
    assert w.states() == {"comunidade": "churned"}
    assert w.roles() == set()
    assert "assinante" not in w.subscriber().tags
    assert [flow for product, flow in w.flows() if product == "comunidade"].count("churn") == 2
    assert [t for t in w.timers("comunidade") if t[1] == "pending"] == []


# -- Refunds, chargebacks, disputes ------------------------------------------------------------


def test_story_09_refund(world: World):
    """PURCHASE_REFUNDED(C) -> `refunded` at once: R_course removed, class left, tag removed,
    flow refund."""
    w = world
    onboard(w)
    assert w.roles() == {COURSE_ROLE} and w.classes() == {"curso-2026"}
    event_id = w.deliver(hotmart(REFUNDED, new_id=False))
    assert w.event(event_id).status == "processed"
    assert w.states() == {"curso": "refunded"}
    assert w.roles() == set()
    assert w.classes() == set()
    assert w.subscriber().tags == set()
    assert w.flows() == [("curso", "onboarding"), ("curso", "welcome"), ("curso", "refund")]
    assert w.grants() == set()


def test_story_10_chargeback(world: World):
    """PURCHASE_CHARGEBACK(C) -> as 9 (revoked at once, refund flow), plus an admin alert:
    a chargeback is a fraud signal."""
    w = world
    onboard(w)
    chargeback = hotmart(
        "purchase_chargeback",
        product_id=COURSE_ID,
        transaction="HP10000000000001",
        creation_date=load_payload("purchase_refunded.json")["creation_date"],
    )
    event_id = w.deliver(chargeback)
    assert w.event(event_id).status == "processed"
    assert w.states() == {"curso": "refunded"}
    assert w.roles() == set() and w.classes() == set()
    assert w.subscriber().tags == set()
    assert w.flows() == [("curso", "onboarding"), ("curso", "welcome"), ("curso", "refund")]
    expected = w.rule_alert("chargeback", "curso", transaction="HP10000000000001")
    [alert] = w.alerts()
    assert (alert.message, alert.event_id) == (expected, event_id)
    assert any(expected in message for message in w.channel())


def test_story_11_dispute(world: World):
    """PURCHASE_PROTEST(C) -> recorded and flagged per the rules' policy (here: `disputed`,
    access kept, admins alerted); the final revoke comes with PURCHASE_REFUNDED."""
    w = world
    onboard(w)
    protest_id = w.deliver(hotmart("purchase_protest", new_id=False))
    assert w.event(protest_id).status == "processed"
    assert w.states() == {"curso": "disputed"}
    assert w.roles() == {COURSE_ROLE} and w.classes() == {"curso-2026"}  # kept until decided
    assert "aluno-curso" in w.subscriber().tags
    expected = w.rule_alert("dispute_opened", "curso")
    [alert] = w.alerts()
    assert (alert.message, alert.event_id) == (expected, protest_id)
    assert any(expected in message for message in w.channel())

    w.deliver(hotmart(REFUNDED, new_id=False))
    assert w.states() == {"curso": "refunded"}
    assert w.roles() == set() and w.classes() == set()
    assert "aluno-curso" not in w.subscriber().tags
    assert w.flows()[-1] == ("curso", "refund")


def test_story_12_warranty_over(world: World):
    """PURCHASE_COMPLETE(C) -> no access change."""
    w = world
    approved = hotmart(APPROVED, new_id=False)
    onboard(w)
    requests = len(w.discord.requests), len(w.manychat.requests)
    complete = later(hotmart("purchase_complete", product_id=COURSE_ID, transaction="HP10000000000001"), approved)
    event_id = w.deliver(complete)
    found = w.event(event_id)
    assert found.status == "ignored"
    assert found.reason == f"curso: {w.rules.ignore['PURCHASE_COMPLETE']}"
    assert found.action_runs == []
    assert w.states() == {"curso": "active"}
    assert w.roles() == {COURSE_ROLE} and w.classes() == {"curso-2026"}
    assert (len(w.discord.requests), len(w.manychat.requests)) == requests


# -- Access is a union; we revoke only what we granted -------------------------------------------


def test_story_13_overlap(world: World):
    """Ana owns B and C. PURCHASE_REFUNDED(C) -> C is `refunded`, but R_course, the class and
    `aluno-curso` stay: B still grants them. (Refunding B then removes everything.)"""
    w = world
    onboard(w)
    w.deliver(hotmart(APPROVED, product_id=BUNDLE_ID, transaction="HP30000000000001"))
    assert w.states() == {"curso": "active", "combo": "active"}
    assert w.roles() == {COURSE_ROLE, COMMUNITY_ROLE}
    assert w.subscriber().tags == {"aluno-curso", "assinante"}

    w.deliver(hotmart(REFUNDED, new_id=False))
    assert w.states() == {"curso": "refunded", "combo": "active"}
    assert w.roles() == {COURSE_ROLE, COMMUNITY_ROLE}
    assert w.classes() == {"curso-2026"}
    assert w.subscriber().tags == {"aluno-curso", "assinante"}
    assert ("DELETE", f"/guilds/{w.discord.guild_id}/members/{ANA_DISCORD}/roles/{COURSE_ROLE}") not in (
        w.role_requests()
    )
    assert w.flows()[-1] == ("curso", "refund")

    w.deliver(hotmart(REFUNDED, product_id=BUNDLE_ID, transaction="HP30000000000001"))
    assert w.states() == {"curso": "refunded", "combo": "refunded"}
    assert w.roles() == set() and w.classes() == set() and w.subscriber().tags == set()


def test_story_14_a_role_given_by_hand(world: World):
    """An admin gave Ana R_vip in Discord. A refund (C) and a churn (S) remove only roles the
    engine granted; R_vip stays."""
    w = world
    w.discord.add_role(VIP_ROLE, "VIP", position=1)
    w.discord.set_member_roles(ANA_DISCORD, [VIP_ROLE])
    onboard(w)
    w.deliver(hotmart(SUB_FIRST, new_id=False))
    assert w.roles() == {COURSE_ROLE, COMMUNITY_ROLE, VIP_ROLE}

    w.deliver(hotmart(REFUNDED, new_id=False))
    assert w.states()["curso"] == "refunded"
    assert w.roles() == {COMMUNITY_ROLE, VIP_ROLE}

    w.deliver(hotmart("subscription_cancellation", new_id=False))  # paid-until date long past: churn now
    assert w.states()["comunidade"] == "churned"
    assert w.roles() == {VIP_ROLE}
    assert all(VIP_ROLE not in path for _, path in w.role_requests())  # never even asked


# -- Delivery faults -----------------------------------------------------------------------------


def test_story_16_out_of_order(world: World):
    """PURCHASE_REFUNDED(C) is applied, then a late PURCHASE_APPROVED(C) of the same purchase
    with an older `creation_date` arrives -> ignored as stale; access stays revoked. (Both are
    webhooks: the same change twice by webhook is stored twice, and the creation dates decide.)"""
    w = world
    onboard(w)
    w.deliver(hotmart(REFUNDED, new_id=False))
    flows, tokens = w.flows(), len(w.tokens())
    late_id = w.deliver(hotmart(APPROVED))  # same purchase and date, new envelope id
    found = w.event(late_id)
    assert found.status == "ignored" and found.reason.startswith("stale: transaction HP10000000000001 was refunded")
    assert w.states() == {"curso": "refunded"}
    assert w.roles() == set() and w.classes() == set() and w.subscriber().tags == set()
    assert w.flows() == flows and len(w.tokens()) == tokens
    assert w.grants() == set()


def test_story_17_buying_again(world: World):
    """After the refund, a new PURCHASE_APPROVED(C) (new transaction, newer date) -> access
    again, straight to `active` since Ana is already linked."""
    w = world
    onboard(w)
    refund = hotmart(REFUNDED, new_id=False)
    w.deliver(refund)
    assert w.roles() == set()
    tokens = len(w.tokens())
    w.deliver(later(hotmart(APPROVED, transaction="HP10000000000099"), refund))
    assert w.states() == {"curso": "active"}
    assert w.roles() == {COURSE_ROLE} and w.classes() == {"curso-2026"}
    assert "aluno-curso" in w.subscriber().tags
    assert len(w.tokens()) == tokens  # no new code
    assert w.flows()[-1] == ("curso", "welcome")
    assert w.membership("curso").transaction == "HP10000000000099"


def test_story_18_never_paid(world: World):
    """PURCHASE_BILLET_PRINTED(C) -> waiting for payment (reminder flow); PURCHASE_EXPIRED(C)
    -> nothing granted, nothing to revoke."""
    w = world
    w.deliver(hotmart("purchase_billet_printed", new_id=False))
    assert w.states() == {"curso": "pending_payment"}
    assert w.flows() == [("curso", "billet_reminder")]
    expired_id = w.deliver(hotmart("purchase_expired", new_id=False))
    assert w.event(expired_id).status == "processed"
    assert w.states() == {"curso": "new"}
    assert w.roles() == set() and w.classes() == set() and w.subscriber().tags == set()
    assert w.grants() == set() and w.tokens() == []
    assert w.flows() == [("curso", "billet_reminder")]
    assert w.role_requests() == []
    assert "removeTagByName" not in w.manychat_writes()


def test_story_19_unknown_product(world: World):
    """A webhook for a product no rules file claims -> 200, stored, needs_attention with the
    reason "no product matches id N" and one alert. (The deployed shape, grouping and
    unmanaged ids: tests/e2e/test_attention_stories.py.)"""
    w = world
    response = w.post(hotmart(APPROVED, product_id=9999999))
    assert response.status_code == 200 and response.json()["status"] == "accepted"
    w.h.run_queue()
    found = w.event(response.json()["event_id"])
    assert found.status == "needs_attention" and found.reason == "no product matches id 9999999"
    [alert] = w.alerts()
    assert alert.group_key == "rules.unknown_product:9999999"
    assert any("no product matches id 9999999" in message for message in w.channel())
    assert found.payload["data"]["product"]["id"] == 9999999
    assert w.student() is None
    assert w.role_requests() == [] and w.manychat.requests == []  # only the alert went out


def test_story_15_redelivery(start_stack, fakes, pg):
    """The same PURCHASE_APPROVED(C) arrives 3 times, two at the same moment and one while the
    worker runs it -> one code, one onboarding flow, one transition. Runs on the deployed
    shape: `engine serve` + `engine worker` processes, PostgreSQL, Redis."""
    stack = start_stack()
    body = (REFERENCE / "purchase_approved.json").read_bytes()
    together = threading.Barrier(2)

    def post_at_once(_: int) -> httpx.Response:
        with httpx.Client(base_url=stack.api, timeout=10) as client:
            together.wait()
            return client.post("/webhooks/hotmart", content=body, headers={"X-HOTMART-HOTTOK": HOTTOK})

    with ThreadPoolExecutor(2) as pool:
        first_two = list(pool.map(post_at_once, range(2)))
    third = stack.post_webhook(body)
    answers = [r.json() for r in [*first_two, third]]
    assert all(r.status_code == 200 for r in [*first_two, third])
    assert sorted(a["status"] for a in answers) == ["accepted", "duplicate", "duplicate"]
    [event_id] = [a["event_id"] for a in answers if a["status"] == "accepted"]
    assert stack.wait_event(event_id)["status"] == "processed"
    time.sleep(0.5)  # anything else queued would run now

    flows = fakes.manychat.flows  # ns -> logical name
    assert [flows[ns] for _, ns, _ in fakes.manychat.flows_sent] == ["onboarding"]
    sessions = session_factory(Settings(ENGINE_ENV="test", database_url=pg))
    with sessions() as session:
        events = session.scalars(select(Event)).all()
        assert [(e.id, e.type, e.status) for e in events] == [(event_id, "PURCHASE_APPROVED", "processed")]
        assert [p["transition"] for p in events[0].plans] == ["purchase_not_linked"]
        [token] = session.scalars(select(OnboardingToken)).all()
        [membership] = session.scalars(select(Membership)).all()
        assert membership.state == "pending_onboarding"
    subscriber = fakes.manychat.find(email=ANA_EMAIL)
    assert subscriber.fields["codigo_discord"] == token.code


# -- The outside world misbehaves ----------------------------------------------------------------


def test_story_20_manychat_contact_missing(make_world):
    """The subscriber can't be found (the rules don't allow creating one) -> the step fails,
    an admin alert says first contact is needed; after the admin fixes it, a retry sends the
    flow once."""
    w = make_world(ana_in_manychat=False)
    assert w.rules.create_missing_subscribers is False
    event_id = w.deliver(hotmart(APPROVED, new_id=False))
    assert w.event(event_id).status == "failed"
    step = w.step(event_id, "add_tag")
    assert (step.status, step.attempts, step.error) == ("failed", 1, "manychat.subscriber_not_found")
    assert [r.status for r in w.steps(event_id)][2:] == ["pending"] * 4  # later steps wait
    assert w.h.drains == []  # retrying cannot help: no automatic retry
    [alert] = w.alerts()
    assert alert.kind == "manychat.subscriber_not_found" and "first contact" in alert.message
    assert any("first contact" in message for message in w.channel())

    requests = len(w.manychat.requests)
    w.drain_retries()
    sweep(w.runtime)
    w.h.run_queue()
    assert len(w.manychat.requests) == requests and w.event(event_id).status == "failed"

    seed_ana(w.manychat)  # the admin makes first contact
    retry = w.admin("POST", f"/admin/events/{event_id}/retry")
    assert retry.status_code == 202
    w.h.run_queue()
    assert w.event(event_id).status == "processed"
    assert w.flows() == [("curso", "onboarding")]
    [token] = w.tokens()
    assert w.subscriber().tags == {"aluno-curso"} and w.code() == token.code


def test_story_21_manychat_times_out_on_a_flow(make_world):
    """ManyChat times out on sendFlow (the flow did go out): the step fails at once, nothing
    resends it automatically (the message may have gone out), an alert says so; an admin
    retry is a deliberate choice and sends it again."""
    w = make_world(manychat_timeout=0.3)
    w.manychat.stall("sendFlow", 1.0)
    event_id = w.deliver(hotmart(APPROVED, new_id=False))
    assert w.event(event_id).status == "failed"
    step = w.step(event_id, "trigger_flow")
    assert (step.status, step.attempts, step.error) == ("failed", 1, "manychat.unavailable")
    assert step.result["maybe_delivered"] is True
    assert w.flows() == [("curso", "onboarding")]  # ManyChat did send it
    assert w.h.drains == []
    [alert] = w.alerts()
    assert "may have been delivered" in alert.message and "NOT retried automatically" in alert.message
    assert any("may have been delivered" in message for message in w.channel())

    w.drain_retries(extra_seconds=600)
    sweep(w.runtime)
    w.h.run_queue()
    assert w.flows() == [("curso", "onboarding")]  # still once
    assert w.event(event_id).status == "failed"

    w.manychat.timeouts.clear()
    assert w.admin("POST", f"/admin/events/{event_id}/retry").status_code == 202
    w.h.run_queue()
    assert w.event(event_id).status == "processed"
    assert w.flows() == [("curso", "onboarding"), ("curso", "onboarding")]  # the admin chose to resend


def test_story_22_discord_role_above_the_bot(world: World):
    """Discord answers 403/50013 (the role is above the bot's): the step fails at once
    (retrying can't help) and the alert tells the admin to move the bot's role up."""
    w = world
    w.deliver(hotmart(APPROVED, new_id=False))
    w.discord.queue_failure(403, 50013, times=5, path_contains="/roles/")
    outcome = w.register(w.code())
    assert w.event(outcome.event_id).status == "failed"
    step = w.step(outcome.event_id, "add_role")
    assert (step.status, step.attempts, step.error) == ("failed", 1, "discord.forbidden")
    assert len(w.role_requests()) == 1
    assert w.h.drains == []
    [alert] = w.alerts()
    assert "Move the bot's role above" in alert.message
    assert any("Move the bot's role above" in message for message in w.channel())
    assert w.classes() == set() and ("curso", "welcome") not in w.flows()  # later steps wait

    w.drain_retries()
    assert len(w.role_requests()) == 1  # not retried

    w.discord.failures.clear()  # the admin moves the bot's role up
    assert w.admin("POST", f"/admin/events/{outcome.event_id}/retry").status_code == 202
    w.h.run_queue()
    assert w.event(outcome.event_id).status == "processed"
    assert w.roles() == {COURSE_ROLE} and w.classes() == {"curso-2026"}
    assert w.flows()[-1] == ("curso", "welcome")


@pytest.mark.slow
def test_story_23_discord_rate_limits(make_world):
    """Hundreds of role changes in a burst finish without a failed step: the connector waits
    as Discord's headers say. 150 linked students of the bundle rejoin the server at once
    (MEMBER_JOINED -> 2 roles each = 300 role PUTs), run by 8 worker threads sharing one
    connector, against a fake allowing 25 role changes per 0.25 s window."""
    w = make_world(route_limit=25, route_window=0.25, global_limit=10_000, discord_global_rate=1000.0)
    users = [str(90000000000000000 + i) for i in range(150)]
    with w.runtime.sessions.begin() as session:
        for i, user in enumerate(users):
            student = Student(email=f"aluno{i}@example.com", discord_id=user)
            session.add(student)
            session.flush()
            session.add(Membership(student_id=student.id, product_key="combo", state="active"))
    for user in users:
        w.discord.add_member(user)
    event_ids = [w.links.member_joined(user) for user in users]
    w.h.queued.clear()

    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda event_id: process_event(w.runtime, event_id), event_ids))
    elapsed = time.monotonic() - started

    assert results == ["processed"] * len(users)
    assert all(w.roles(user) == {COURSE_ROLE, COMMUNITY_ROLE} for user in users)
    assert len(w.role_requests()) == 2 * len(users)  # every change went through, once
    assert w.discord.max_429_per_window() <= 1
    with w.runtime.sessions() as session:
        runs = session.scalars(select(ActionRun)).all()
    assert {(r.action, r.status, r.attempts) for r in runs} == {("add_role", "done", 1)}
    assert w.alerts() == []
    assert elapsed >= (2 * len(users) / 25 - 1) * 0.25  # it did wait for the windows


def test_story_24_ana_left_the_server(make_world):
    """Ana is not in the Discord server: role grants fail with unknown member -> kept as
    desired; when she (re)joins, MEMBER_JOINED gives them back."""
    w = make_world(ana_in_guild=False)
    w.deliver(hotmart(APPROVED, new_id=False))
    outcome = w.register(w.code())
    assert w.event(outcome.event_id).status == "processed"  # not a failure
    step = w.step(outcome.event_id, "add_role")
    assert (step.status, step.error) == ("skipped", "discord.unknown_member")
    assert w.states() == {"curso": "active"} and w.classes() == {"curso-2026"}
    assert w.roles() is None  # not a member
    assert w.alerts() == []

    def role_grant_applied() -> bool:
        with w.runtime.sessions() as session:
            [grant] = session.scalars(select(Grant).where(Grant.kind == "discord_role")).all()
            return (grant.resource, grant.applied) == (COURSE_ROLE, True)

    assert not role_grant_applied()  # desired, not applied

    w.discord.add_member(ANA_DISCORD)  # she joins
    joined = w.links.member_joined(ANA_DISCORD)
    w.h.run_queue()
    assert w.event(joined).status == "processed"
    assert w.roles() == {COURSE_ROLE}
    assert role_grant_applied()

    w.discord.remove_member(ANA_DISCORD)  # she leaves (Discord drops her roles) and comes back
    w.discord.add_member(ANA_DISCORD)
    w.links.member_joined(ANA_DISCORD)
    w.h.run_queue()
    assert w.roles() == {COURSE_ROLE}


def test_story_25_relink(world: World):
    """Ana links a second Discord account with a fresh code -> the roles move from the old
    account to the new one. (Nothing in the shipped rules or admin tools issues a code to a
    student who is already linked, so the fresh code is put in the database directly.)"""
    w = world
    onboard(w)
    w.deliver(hotmart(SUB_FIRST, new_id=False))
    assert w.roles() == {COURSE_ROLE, COMMUNITY_ROLE}
    w.discord.add_member(ANA_SECOND_ACCOUNT)
    fresh = new_code()
    with w.runtime.sessions.begin() as session:
        ana = session.scalars(select(Student).where(Student.email == ANA_EMAIL)).one()
        session.add(
            OnboardingToken(
                code=fresh, student_id=ana.id, created_at=w.clock(), expires_at=w.clock() + timedelta(days=7)
            )
        )

    outcome = w.register(fresh, user=ANA_SECOND_ACCOUNT)
    assert (outcome.outcome, outcome.reply) == ("linked", w.reply("linked"))
    assert w.event(outcome.event_id).status == "processed"
    assert w.roles(ANA_DISCORD) == set()
    assert w.roles(ANA_SECOND_ACCOUNT) == {COURSE_ROLE, COMMUNITY_ROLE}
    ana = w.student()
    assert (ana.discord_id, ana.previous_discord_id) == (ANA_SECOND_ACCOUNT, ANA_DISCORD)
    assert w.states() == {"curso": "active", "comunidade": "active"}
    # The ledger follows: a refund now removes the role from the new account.
    w.deliver(hotmart(REFUNDED, new_id=False))
    assert w.roles(ANA_SECOND_ACCOUNT) == {COMMUNITY_ROLE}


# -- Rollout ------------------------------------------------------------------------------------


def test_story_26_flags(start_stack, fakes, make_harness):
    """With HOTMART_ENABLED off, webhooks are stored and held (nothing runs); turned on, they
    are processed. With DISCORD_ENABLED off, Discord steps are recorded as skipped, never as
    done.

    The holding runs on the deployed shape (`engine serve` + `engine worker` with
    HOTMART_ENABLED=false and DISCORD_ENABLED=false). The release runs in this process: a
    runtime with HOTMART_ENABLED on (the default) calls `engine.pipeline.sweep.release_held`
    as the worker's periodic sweep does (that sweep only runs on the minute: too slow to wait
    for), with the connectors the flags give (`build_connectors`: ManyChat on, Discord off).

    "Processed in creation order" is the ordering guarantee of story 27: a student's released
    events are planned together in creation order, and one a thread reaches late is re-evaluated
    against the ordered history (tests/pipeline/test_ordering.py)."""
    stack = start_stack(HOTMART_ENABLED="false", DISCORD_ENABLED="false")
    approval = hotmart(APPROVED, new_id=False)
    response = stack.post_webhook(json.dumps(approval).encode())
    assert response.status_code == 200 and response.json()["status"] == "accepted"
    approval_id = response.json()["event_id"]
    time.sleep(1.0)  # a worker that wrongly picked it up would have by now
    assert stack.event(approval_id)["status"] == "held"
    assert stack.admin(f"/admin/events/{approval_id}/retry", method="POST").status_code == 409
    assert fakes.manychat.requests == [] and fakes.discord.requests == []
    assert stack.post_webhook(json.dumps(approval).encode()).json()["status"] == "duplicate"

    h = make_harness(
        discord_enabled=False,
        manychat_enabled=True,
        manychat_api_token=FAKE_TOKEN,
        manychat_api_base=fakes.manychat_url,
    )
    assert h.runtime.settings.hotmart_enabled is True
    h.clock.now = datetime.now(UTC)  # the stack's own sweep must not find our timers overdue
    registry, sink = build_connectors(h.runtime.settings)
    h.runtime.connectors.update(registry)
    h.runtime.alert_sink = sink

    assert release_held(h.runtime) == [approval_id]
    assert h.run_queue() == ["processed"]
    assert stack.event(approval_id)["status"] == "processed"
    flows = fakes.manychat.flows  # ns -> logical name
    assert [flows[ns] for _, ns, _ in fakes.manychat.flows_sent] == ["onboarding"]
    code = fakes.manychat.find(email=ANA_EMAIL).fields["codigo_discord"]

    # Discord off: Ana links; the role step is skipped with the flag as reason, never done.
    outcome = LinkService(h.runtime.sessions, h.runtime.rules, h.queued.append, clock=h.clock).link(ANA_DISCORD, code)
    assert outcome.outcome == "linked"
    assert h.run_queue() == ["processed"]
    with h.runtime.sessions() as session:
        linked = session.get(Event, outcome.event_id)
        steps = {r.action: r for r in linked.action_runs}
        assert (steps["add_role"].status, steps["add_role"].error, steps["add_role"].detail) == (
            "skipped",
            "flag.disabled",
            "DISCORD_ENABLED is off",
        )
        assert steps["enroll"].status == "done" and steps["trigger_flow"].status == "done"
        assert session.scalars(select(Membership.state)).all() == ["active"]
        assert session.scalars(select(Grant).where(Grant.kind == "discord_role")).all() == []
    assert fakes.discord.requests == []  # Discord was never called
    assert fakes.discord.member_roles(ANA_DISCORD) == set()
    assert stack.event(outcome.event_id)["status"] == "processed"


# -- Nothing is lost silently ---------------------------------------------------------------------

BIA_EMAIL = "bia.exemplo@example.com"
BIA_DISCORD = "80351110224678913"


@pytest.mark.slow
def test_story_29_a_state_is_renamed(make_world, engine_cli, tmp_path):
    """The rules rename `overdue` to `atrasado` while Bia's membership is overdue. `engine check
    --database` fails naming the state and the count of memberships; with `renamed_states:
    {overdue: atrasado}` it passes and Bia's membership moves, recorded."""
    rules_dir = tmp_path / "rules"
    shutil.copytree(RULES, rules_dir)
    w = make_world(rules_dir=rules_dir)
    w.manychat.seed_subscriber(email=BIA_EMAIL, whatsapp_phone="+5511999990002", first_name="Bia")
    w.discord.add_member(BIA_DISCORD)

    def as_bia(payload: dict) -> dict:
        payload["data"]["buyer"]["email"] = BIA_EMAIL
        return payload

    w.deliver(as_bia(hotmart(SUB_FIRST)))
    assert w.register(w.manychat.find(email=BIA_EMAIL).fields["codigo_discord"], user=BIA_DISCORD).outcome == "linked"
    delayed = as_bia(hotmart("purchase_delayed"))
    w.deliver(delayed)
    assert w.states() == {"comunidade": "overdue"}
    assert w.roles(BIA_DISCORD) == {COMMUNITY_ROLE}

    # The admin renames the state in lifecycle.yaml and forgets Bia: the rules alone pass...
    database = w.runtime.settings.database_url
    rename_overdue(rules_dir, declare=False)
    assert engine_cli(database, "check", "--rules", str(rules_dir)).returncode == 0
    # ...the rules against the live data do not.
    failed = engine_cli(database, "check", "--database", "--rules", str(rules_dir))
    assert failed.returncode == 1
    assert failed.stderr.splitlines()[0] == (
        f"rules/lifecycle.yaml:{states_line(rules_dir)}: state 'overdue' is not defined, but 1 membership and "
        f"1 pending timer use it; e.g. {BIA_EMAIL} (comunidade); declare lifecycle.renamed_states: "
        "{overdue: <new state>} or keep the state"
    )

    # Declared: the check passes and says what will move.
    rename_overdue(rules_dir, declare=True)
    passed = engine_cli(database, "check", "--database", "--rules", str(rules_dir))
    assert passed.returncode == 0, passed.stderr
    assert "note: 1 membership in 'overdue' will move to 'atrasado' when a worker loads these rules" in passed.stdout
    assert w.states() == {"comunidade": "overdue"}

    # The worker's sweep (every minute, events or not) loads the new rules: Bia moves, recorded.
    sweep(w.runtime)
    assert w.states() == {"comunidade": "atrasado"}
    with w.runtime.sessions() as session:
        [entry] = session.scalars(select(History)).all()
        bia = session.scalar(select(Student).where(Student.email == BIA_EMAIL))
        assert (entry.kind, entry.student_id, entry.actor) == ("state_renamed", bia.id, "worker")
        assert entry.rules_version == w.runtime.rules.version  # the rules that declared the rename
        assert entry.detail == {"from": "overdue", "to": "atrasado", "pending_timers": ["GRACE_EXPIRED"]}
    assert engine_cli(database, "check", "--database", "--rules", str(rules_dir)).stdout.splitlines()[1:] == [
        "database ok: 1 memberships and 1 pending timers fit the rules"
    ]
    assert w.alerts() == []  # a declared rename is not a problem
    timeline = engine_cli(database, "student", BIA_EMAIL).stdout.splitlines()
    assert timeline[1].startswith("membership  comunidade: atrasado since ")
    assert [line[21:] for line in timeline if " history " in line] == [
        f"history     comunidade: state renamed overdue -> atrasado by worker, rules {w.runtime.rules.version}"
    ]

    # The renamed state works as the old one did: Bia pays within grace and is active again.
    w.clock.advance(days=2)
    w.deliver(later(as_bia(hotmart("purchase_approved_renewal", recurrence_number=4)), delayed))
    assert w.states() == {"comunidade": "active"}
    assert w.roles(BIA_DISCORD) == {COMMUNITY_ROLE}
    assert w.flows()[-1] == ("comunidade", "payment_confirmed")
    assert ("GRACE_EXPIRED", "cancelled") in [t[:2] for t in w.timers("comunidade")]


# -- Nothing is lost silently ----------------------------------------------------------------------


def test_story_27_crossing_events(start_stack, fakes, pg, redis_url):
    """Ana's events for S reach the engine out of order within seconds (a backlog redelivered
    after an outage): the renewal's approval, then the late-payment notice created before it.
    The outcome equals applying them in creation order; no flow is sent for a transition the
    ordered history supersedes, and none twice.

    Deployed shape (`engine serve` + `engine worker`, PostgreSQL, Redis, fakes), with the default
    settle window. Twice: the first pair crosses within the window (the two are planned together
    in creation order); the second pair's notice arrives after its approval was applied (it is
    re-evaluated against the ordered history)."""
    stack = start_stack()
    assert Settings(ENGINE_ENV="test").order_settle_seconds > 0  # the stack runs the default window
    sessions = session_factory(Settings(ENGINE_ENV="test", database_url=pg))

    def post(payload: dict) -> int:
        response = stack.post_webhook(json.dumps(payload).encode())
        assert response.status_code == 200 and response.json()["status"] == "accepted", response.text
        return response.json()["event_id"]

    def flows() -> list[str]:
        return [fakes.manychat.flows[ns] for _, ns, _ in fakes.manychat.flows_sent]

    def pending_timers() -> list[str]:
        with sessions() as session:
            return list(session.scalars(select(ScheduledEvent.event_type).where(ScheduledEvent.status == "pending")))

    def steps(event_id: int) -> list[tuple[str, str, str | None]]:
        with sessions() as session:
            runs = session.scalars(
                select(ActionRun).where(ActionRun.event_id == event_id).order_by(ActionRun.step_index)
            )
            return [(r.action, r.status, r.error) for r in runs]

    # Ana subscribes to S and links her Discord account.
    subscribed = hotmart(SUB_FIRST, creation_date=epoch_ms(datetime.now(UTC) - timedelta(hours=1)))
    assert stack.wait_event(post(subscribed))["status"] == "processed"
    code = fakes.manychat.find(email=ANA_EMAIL).fields["codigo_discord"]
    linked = LinkService(sessions, RulesRepository(RULES), remote_enqueue(redis_url)).link(ANA_DISCORD, code)
    assert stack.wait_event(linked.event_id)["status"] == "processed"
    assert flows() == ["onboarding", "welcome"]
    time.sleep(0.5)
    base = datetime.now(UTC)  # everything below was created after the link, in this order:

    def crossing(transaction: str, recurrence: int, created_ms: int) -> tuple[dict, dict]:
        """A late-payment notice and, 100 ms later, the payment of the same charge."""
        notice = hotmart("purchase_delayed", transaction=transaction, creation_date=created_ms)
        paid = hotmart(
            "purchase_approved_renewal",
            transaction=transaction,
            recurrence_number=recurrence,
            creation_date=created_ms + 100,
        )
        return notice, paid

    notice, renewal = crossing("HP20000000002702", 2, epoch_ms(base - timedelta(milliseconds=400)))
    next_notice, next_renewal = crossing("HP20000000002703", 3, epoch_ms(base - timedelta(milliseconds=200)))

    # 1. Within seconds: the approval, then the notice created before it.
    renewal_id, notice_id = post(renewal), post(notice)
    assert stack.wait_event(renewal_id)["status"] == "processed"
    assert stack.wait_event(notice_id)["status"] == "processed"
    # Creation order: late (active -> overdue), then paid (overdue -> active); the late-payment
    # flow is superseded by the payment that followed: never sent.
    [notice_plan] = stack.event(notice_id)["plans"]
    [renewal_plan] = stack.event(renewal_id)["plans"]
    assert (notice_plan["transition"], notice_plan["to_state"]) == ("payment_late", "overdue")
    assert (renewal_plan["transition"], renewal_plan["from_state"], renewal_plan["to_state"]) == (
        "paid_after_all",
        "overdue",
        "active",
    )
    assert ("trigger_flow", "skipped", "superseded") in steps(notice_id)
    assert flows() == ["onboarding", "welcome", "payment_confirmed"]
    assert pending_timers() == []  # the grace timer the notice set was cancelled by the payment
    assert fakes.discord.member_roles(ANA_DISCORD) == {COMMUNITY_ROLE}
    assert "assinante" in fakes.manychat.find(email=ANA_EMAIL).tags

    # 2. Next month the notice comes after its approval was already applied (as a renewal).
    next_renewal_id = post(next_renewal)
    assert stack.wait_event(next_renewal_id)["status"] == "processed"
    assert stack.event(next_renewal_id)["plans"][0]["transition"] == "renewal_or_repurchase"
    next_notice_id = post(next_notice)
    found = stack.wait_event(next_notice_id)
    assert found["status"] == "processed", found  # re-evaluated, not dropped as stale
    [plan] = found["plans"]
    history = [(h["event_id"], h["transition"], h["superseded"]) for h in plan["reordered"]["history"]]
    assert history[-2:] == [(next_notice_id, "payment_late", True), (next_renewal_id, "paid_after_all", False)]
    assert (plan["from_state"], plan["to_state"]) == ("active", "active")
    assert [s["params"]["flow"] for s in plan["steps"] if s["action"] == "trigger_flow"] == ["payment_confirmed"]

    # Outcome: as in creation order, and no superseded flow, none twice for one payment.
    time.sleep(0.5)  # anything else queued would run now
    with sessions() as session:
        membership = session.scalars(select(Membership)).one()
        assert (membership.product_key, membership.state) == ("comunidade", "active")
        assert membership.transaction == "HP20000000002703"
    assert pending_timers() == []
    assert fakes.discord.member_roles(ANA_DISCORD) == {COMMUNITY_ROLE}
    assert "assinante" in fakes.manychat.find(email=ANA_EMAIL).tags
    assert flows() == ["onboarding", "welcome", "payment_confirmed", "payment_confirmed"]
    assert "payment_late" not in flows()
