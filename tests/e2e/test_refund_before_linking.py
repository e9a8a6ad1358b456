"""Story: Ana buys two products, is refunded on one before linking Discord, and links with the
code she received: she gets the other product's role, not the refunded one's.

One /registrar code per student, shared by her products: a refund's ``revoke_token`` revokes it
only when no other product of the student still waits for it (``engine/pipeline/local_actions.py``).

The deployed shape first (``engine serve`` + ``engine worker`` processes, PostgreSQL, Redis, the
fake Discord and ManyChat servers; every wait has a deadline), then the in-process world of
``tests/e2e/scenario_fixtures.py`` for the other order of purchases and for refunding both.
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from engine.db.models import ActionRun, Membership, OnboardingToken
from engine.db.session import session_factory
from engine.onboarding.linking import LinkService
from engine.pipeline.rules_repository import RulesRepository
from engine.settings import Settings
from tests.conftest import RULES, shipped_rules
from tests.e2e.conftest import remote_enqueue
from tests.e2e.scenario_fixtures import (
    ANA_DISCORD,
    ANA_EMAIL,
    COMMUNITY_ID,
    COMMUNITY_ROLE,
    COURSE_ID,
    COURSE_ROLE,
    World,
    epoch_ms,
    hotmart,
    open_world,
)

C_TRANSACTION, S_TRANSACTION = "HP10000000000001", "HP20000000000001"


def approval(product_id: int, created: datetime) -> dict:
    if product_id == COURSE_ID:
        return hotmart("purchase_approved", transaction=C_TRANSACTION, creation_date=epoch_ms(created))
    return hotmart("purchase_approved_subscription_first", transaction=S_TRANSACTION, creation_date=epoch_ms(created))


def refund(product_id: int, transaction: str, created: datetime) -> dict:
    return hotmart("purchase_refunded", product_id=product_id, transaction=transaction, creation_date=epoch_ms(created))


def test_story_38_refunded_on_the_course_before_linking_she_links_with_her_code_and_gets_the_community(
    start_stack, fakes, pg, redis_url
):
    """38. Two products, one refunded before linking. C, then S (both approved, not linked),
    then C refunded: the code ManyChat holds still links her, for S; C's role never appears.
    Deployed shape."""
    stack = start_stack(ORDER_SETTLE_SECONDS="0")  # one webhook at a time here: no crossing to settle
    sessions = session_factory(Settings(ENGINE_ENV="test", database_url=pg))
    flow_names = {ns: (p.key, name) for p in shipped_rules().products.values() for name, ns in p.flows.items()}

    def deliver(payload: dict) -> dict:
        response = stack.post_webhook(json.dumps(payload).encode())
        assert response.status_code == 200 and response.json()["status"] == "accepted", response.text
        return stack.wait_event(response.json()["event_id"])

    def flows() -> list[tuple[str, str]]:
        return [flow_names[ns] for _, ns, _ in fakes.manychat.flows_sent]

    def code_on_whatsapp() -> str:
        return fakes.manychat.find(email=ANA_EMAIL).fields["codigo_discord"]

    def states() -> dict[str, str]:
        with sessions() as session:
            return {m.product_key: m.state for m in session.scalars(select(Membership))}

    base = datetime.now(UTC) - timedelta(hours=1)
    assert deliver(approval(COURSE_ID, base))["status"] == "processed"
    course_code = code_on_whatsapp()
    assert deliver(approval(COMMUNITY_ID, base + timedelta(minutes=1)))["status"] == "processed"
    code = code_on_whatsapp()  # the subscription's code replaced the course's: one code per student
    assert code != course_code
    assert states() == {"curso": "pending_onboarding", "comunidade": "pending_onboarding"}

    refunded = deliver(refund(COURSE_ID, C_TRANSACTION, base + timedelta(minutes=2)))
    assert refunded["status"] == "processed"
    assert states() == {"curso": "refunded", "comunidade": "pending_onboarding"}
    with sessions() as session:
        [revoke] = session.scalars(
            select(ActionRun).where(ActionRun.event_id == refunded["id"], ActionRun.action == "revoke_token")
        ).all()
        assert (revoke.status, revoke.detail) == ("done", "code kept: still needed by comunidade")
    assert code_on_whatsapp() == code
    assert fakes.discord.member_roles(ANA_DISCORD) == set()

    # /registrar codigo:<the code on WhatsApp>, the bot enqueueing into the stack's Redis.
    links = LinkService(sessions, RulesRepository(RULES), remote_enqueue(redis_url))
    outcome = links.link(ANA_DISCORD, code)
    assert outcome.outcome == "linked", outcome
    assert stack.wait_event(outcome.event_id)["status"] == "processed"
    stack.wait_for(lambda: fakes.discord.member_roles(ANA_DISCORD) == {COMMUNITY_ROLE}, what="the community role")
    assert COURSE_ROLE not in fakes.discord.member_roles(ANA_DISCORD)
    assert states() == {"curso": "refunded", "comunidade": "active"}
    assert flows() == [
        ("curso", "onboarding"),
        ("comunidade", "onboarding"),
        ("curso", "refund"),
        ("comunidade", "welcome"),
    ]
    # The course's first code (replaced by the subscription's) stays dead, and says why.
    with sessions() as session:
        dead = session.scalars(select(OnboardingToken).where(OnboardingToken.code == course_code)).one()
        assert (dead.used_at, dead.revoked_reason) == (None, "access_ended")
    assert links.link(ANA_DISCORD, course_code).outcome == "access_ended_code"


@pytest.fixture
def make_world(make_harness):
    with ExitStack() as stack:
        yield lambda **options: stack.enter_context(open_world(make_harness, **options))


def test_subscription_then_course_refunded_the_course_code_links_the_subscription(make_world):
    """S, then C (C's code replaces S's on WhatsApp), then C refunded: the code is handed over
    to S and links her for S only."""
    w: World = make_world()
    base = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)
    w.deliver(approval(COMMUNITY_ID, base))
    w.deliver(approval(COURSE_ID, base + timedelta(minutes=1)))
    code = w.code()
    assert [(t.code, t.revoked_reason) for t in w.tokens()][-1] == (code, None)

    refund_id = w.deliver(refund(COURSE_ID, C_TRANSACTION, base + timedelta(minutes=2)))

    assert w.step(refund_id, "revoke_token").detail == (
        "code kept: handed over to comunidade, which still waits for the Discord link"
    )
    assert w.states() == {"comunidade": "pending_onboarding", "curso": "refunded"}
    # The subscription's timers still run (the refund cancelled the course's only).
    assert [(name, status) for name, status, _ in w.timers("comunidade")] == [
        ("ONBOARDING_REMINDER", "pending"),
        ("TOKEN_EXPIRED", "pending"),
    ]
    assert {status for _, status, _ in w.timers("curso")} == {"cancelled"}

    outcome = w.register(code)
    assert (outcome.outcome, outcome.reply) == ("linked", w.reply("linked"))
    assert w.states() == {"comunidade": "active", "curso": "refunded"}
    assert w.roles() == {COMMUNITY_ROLE}
    assert w.subscriber().tags == {"assinante"}
    assert w.flows()[-1] == ("comunidade", "welcome")


def test_both_refunded_before_linking_the_code_says_the_access_ended(make_world):
    w: World = make_world()
    base = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)
    w.deliver(approval(COURSE_ID, base))
    w.deliver(approval(COMMUNITY_ID, base + timedelta(minutes=1)))
    code = w.code()
    w.deliver(refund(COURSE_ID, C_TRANSACTION, base + timedelta(minutes=2)))
    w.deliver(refund(COMMUNITY_ID, S_TRANSACTION, base + timedelta(minutes=3)))
    assert w.states() == {"curso": "refunded", "comunidade": "refunded"}

    outcome = w.register(code)
    assert (outcome.outcome, outcome.reply, outcome.event_id) == (
        "access_ended_code",
        w.reply("access_ended_code"),
        None,
    )
    assert w.roles() == set() and w.student().discord_id is None
