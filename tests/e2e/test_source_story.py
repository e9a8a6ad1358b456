"""Issue 23's story on the deployed shape (api + worker processes, PostgreSQL, Redis, fakes): a
signed Kiwify purchase -> code in ManyChat -> /registrar -> role; then the same student buys
another product on Hotmart and ends as one student with both roles."""

from __future__ import annotations

from sqlalchemy import select

from engine.db.models import Student
from engine.db.session import session_factory
from engine.onboarding.linking import LinkService
from engine.pipeline.rules_repository import RulesRepository
from engine.settings import Settings
from engine.sources.kiwify.signature import sign
from tests.conftest import REFERENCE
from tests.e2e.conftest import ANA, COMMUNITY_ROLE, remote_enqueue
from tests.e2e.test_story import subscriber
from tests.pipeline.test_source_stories import DATA, rules_sold_on_every_platform

COURSE_ROLE = "1180000000000000001"
KIWIFY_TOKEN = "kiwify-e2e-token"


def test_a_kiwify_purchase_links_and_a_hotmart_purchase_adds_the_other_role(
    start_stack, fakes, pg, redis_url, tmp_path
):
    rules_dir = rules_sold_on_every_platform(tmp_path)
    stack = start_stack(RULES_DIR=str(rules_dir), KIWIFY_ENABLED="true", KIWIFY_TOKEN=KIWIFY_TOKEN)
    rules = RulesRepository(rules_dir).rules

    # 1. A signed Kiwify purchase of the course: code in ManyChat, no role before the link.
    body = (DATA / "kiwify" / "order_approved.json").read_bytes()
    unsigned = stack.client.post("/webhooks/kiwify", content=body, params={"signature": sign(body, "wrong")})
    assert unsigned.status_code == 401, unsigned.text
    approved = stack.client.post("/webhooks/kiwify", content=body, params={"signature": sign(body, KIWIFY_TOKEN)})
    assert approved.status_code == 200 and approved.json()["status"] == "accepted", approved.text
    event = stack.wait_event(approved.json()["event_id"])
    assert (event["status"], event["type"]) == ("processed", "PURCHASE_APPROVED"), event
    code = subscriber(fakes).fields["codigo_discord"]
    assert len(code) == 8
    assert fakes.discord.member_roles(ANA["discord_id"]) == set()

    # 2. /registrar with the code (the command handler's service): the course's role.
    sessions = session_factory(Settings(ENGINE_ENV="test", database_url=pg))
    service = LinkService(sessions, RulesRepository(rules_dir), remote_enqueue(redis_url))
    outcome = service.link(int(ANA["discord_id"]), code)
    assert (outcome.outcome, outcome.reply) == ("linked", rules.onboarding.replies["linked"])
    stack.wait_event(outcome.event_id)
    stack.wait_for(lambda: fakes.discord.member_roles(ANA["discord_id"]) == {COURSE_ROLE}, what="the course role")

    # 3. The same student buys the community on Hotmart: already linked, so the role comes at once.
    hotmart = stack.post_webhook((REFERENCE / "purchase_approved_subscription_first.json").read_bytes())
    assert hotmart.status_code == 200 and hotmart.json()["status"] == "accepted", hotmart.text
    assert stack.wait_event(hotmart.json()["event_id"])["status"] == "processed"
    stack.wait_for(
        lambda: fakes.discord.member_roles(ANA["discord_id"]) == {COURSE_ROLE, COMMUNITY_ROLE},
        what="both roles",
    )
    with sessions() as session:
        student = session.scalars(select(Student)).one()
        assert student.discord_id == ANA["discord_id"]
        assert sorted(m.product_key for m in student.memberships) == ["comunidade", "curso"]
