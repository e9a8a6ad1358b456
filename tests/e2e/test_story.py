"""The whole story on the deployed shape (api + worker processes, PostgreSQL, Redis, fakes):
purchase -> code in ManyChat -> onboarding flow -> /registrar -> roles and class -> refund."""

from __future__ import annotations

import json

from sqlalchemy import select

from engine.db.models import ClassEnrollment, OnboardingToken
from engine.db.session import session_factory
from engine.onboarding.linking import LinkService
from engine.pipeline.rules_repository import RulesRepository
from engine.settings import Settings
from tests.conftest import REFERENCE, RULES
from tests.e2e.conftest import ANA, remote_enqueue

COURSE_ROLE = "1180000000000000001"


def flows_sent(fakes) -> list[str]:
    return [ns for _, ns, _ in fakes.manychat.flows_sent]


def subscriber(fakes):
    return next(s for s in fakes.manychat.subscribers.values() if s.email == ANA["email"])


def test_purchase_onboarding_link_access_refund(start_stack, fakes, pg, redis_url):
    stack = start_stack()
    rules = RulesRepository(RULES).rules
    course = rules.products["curso"]

    # 1. PURCHASE_APPROVED: tag, code in the custom field, then the onboarding flow.
    approved = stack.post_webhook((REFERENCE / "purchase_approved.json").read_bytes())
    assert approved.status_code == 200 and approved.json()["status"] == "accepted"
    event = stack.wait_event(approved.json()["event_id"])
    assert event["status"] == "processed", event
    sub = subscriber(fakes)
    code = sub.fields["codigo_discord"]
    assert len(code) == 8 and "aluno-curso" in sub.tags
    assert flows_sent(fakes) == [course.flows["onboarding"]]
    assert fakes.discord.member_roles(ANA["discord_id"]) == set()  # not linked yet: no role

    # 2. /registrar with the code (the command handler's service, no Discord connection).
    sessions = session_factory(Settings(ENGINE_ENV="test", database_url=pg))
    service = LinkService(sessions, RulesRepository(RULES), remote_enqueue(redis_url))
    outcome = service.link(int(ANA["discord_id"]), f"  {code.lower()} ")
    assert (outcome.outcome, outcome.reply) == ("linked", rules.onboarding.replies["linked"])
    stack.wait_event(outcome.event_id)
    assert fakes.discord.member_roles(ANA["discord_id"]) == {COURSE_ROLE}
    assert flows_sent(fakes)[-1] == course.flows["welcome"]
    with sessions() as session:
        assert session.scalars(select(ClassEnrollment)).one()
        assert session.scalars(select(OnboardingToken)).one().used_at is not None
    assert service.link(int(ANA["discord_id"]), code).outcome in ("used_code", "linked")

    # 3. PURCHASE_REFUNDED: role removed, class left, tag removed, refund flow.
    refunded = stack.post_webhook((REFERENCE / "purchase_refunded.json").read_bytes())
    stack.wait_event(refunded.json()["event_id"])
    assert fakes.discord.member_roles(ANA["discord_id"]) == set()
    assert "aluno-curso" not in subscriber(fakes).tags
    assert flows_sent(fakes)[-1] == course.flows["refund"]
    with sessions() as session:
        [left] = session.scalars(select(ClassEnrollment)).all()
        assert left.removed_at is not None  # kept as a tombstone: the read API hands it to a polling platform
    # Each flow went out exactly once.
    assert flows_sent(fakes) == [course.flows[name] for name in ("onboarding", "welcome", "refund")]


def test_failed_discord_step_retries_once_alerts_in_the_channel_and_admin_retry_completes(
    start_stack, fakes, pg, redis_url
):
    stack = start_stack()
    # Ana buys the community; Discord fails twice when she links.
    sessions = session_factory(Settings(ENGINE_ENV="test", database_url=pg))
    payload = json.loads((REFERENCE / "purchase_approved_subscription_first.json").read_bytes())
    first = stack.post_webhook(json.dumps(payload).encode())
    stack.wait_event(first.json()["event_id"])
    code = subscriber(fakes).fields["codigo_discord"]
    fakes.discord.queue_failure(503, times=2, path_contains="/roles/")
    outcome = LinkService(sessions, RulesRepository(RULES), remote_enqueue(redis_url)).link(ANA["discord_id"], code)
    event = stack.wait_event(outcome.event_id, statuses=("failed",))
    step = next(s for s in event["steps"] if s["action"] == "add_role")
    assert (step["status"], step["attempts"], step["error"]) == ("failed", 2, "discord.unavailable")
    stack.wait_for(
        lambda: any(
            "discord.unavailable" in m["content"]
            for m in fakes.discord.messages.get(stack.env["DISCORD_ALERT_CHANNEL_ID"], [])
        ),
        what="the alert in the admin channel",
    )
    retry = stack.admin(f"/admin/events/{outcome.event_id}/retry", method="POST")
    assert retry.status_code == 202
    assert stack.wait_event(outcome.event_id)["status"] == "processed"
    assert fakes.discord.member_roles(ANA["discord_id"]) == {"1180000000000000002"}
