"""The stories of more than one payment platform (SCENARIOS 39-41), end to end.

Story 39 runs on the deployed shape (`engine serve` + `engine worker` processes, PostgreSQL,
Redis, the fake Discord and ManyChat servers). Stories 40 and 41 run in the in-process world of
``tests/e2e/scenario_fixtures.py``: the webhooks, signed as each platform signs them, through the
FastAPI app, the real pipeline on PostgreSQL and the real connectors talking HTTP to the fakes.
The rules are the shipped ones with both products also sold on Kiwify and Eduzz.
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from engine.db.models import Event, Student
from engine.db.session import session_factory
from engine.onboarding.linking import LinkService
from engine.pipeline.rules_repository import RulesRepository
from engine.settings import Settings
from engine.sources.eduzz.signature import sign as eduzz_sign
from engine.sources.kiwify.signature import sign as kiwify_sign
from tests.e2e.conftest import ANA, remote_enqueue
from tests.e2e.scenario_fixtures import (
    ANA_DISCORD,
    COMMUNITY_ROLE,
    COURSE_ROLE,
    World,
    hotmart,
    open_world,
)
from tests.e2e.test_story import subscriber
from tests.pipeline.test_source_stories import DATA, rules_sold_on_every_platform

KIWIFY_TOKEN = "kiwify-e2e-token"
EDUZZ_SECRET = "eduzz-e2e-secret"
KIWIFY_COMMUNITY = "d4e5f6"  # comunidade's Kiwify id in rules_sold_on_every_platform
BIA_EMAIL = "bia.exemplo@example.com"  # the buyer of tests/data/eduzz's invoices
BIA_DISCORD = "80351110224678913"


def kiwify_body(fixture: str) -> bytes:
    return (DATA / "kiwify" / f"{fixture}.json").read_bytes()


def test_story_39_a_kiwify_purchase_is_verified_and_links_as_a_hotmart_one(start_stack, fakes, pg, redis_url, tmp_path):
    """39. A Kiwify purchase. A wrong or missing signature is a 401 and nothing is stored; the
    signed webhook is accepted, her code reaches ManyChat with the course's tag and onboarding
    flow, and `/registrar` gives the course's role and welcome flow, as for a Hotmart buyer."""
    rules_dir = rules_sold_on_every_platform(tmp_path)
    stack = start_stack(RULES_DIR=str(rules_dir), KIWIFY_ENABLED="true", KIWIFY_TOKEN=KIWIFY_TOKEN)
    rules = RulesRepository(rules_dir).rules
    course = rules.products["curso"]
    sessions = session_factory(Settings(ENGINE_ENV="test", database_url=pg))
    body = kiwify_body("order_approved")

    # 1. A wrong signature, then none: refused, and nothing stored (not even as rejected).
    wrong = stack.client.post("/webhooks/kiwify", content=body, params={"signature": kiwify_sign(body, "wrong")})
    assert wrong.status_code == 401, wrong.text
    missing = stack.client.post("/webhooks/kiwify", content=body)
    assert missing.status_code == 401, missing.text
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 0
        assert session.scalar(select(func.count()).select_from(Student)) == 0
    assert fakes.manychat.flows_sent == [] and subscriber(fakes).fields == {}  # nothing reached her either

    # 2. The signed purchase: her code in ManyChat, the course's tag and onboarding flow, no role yet.
    approved = stack.client.post(
        "/webhooks/kiwify", content=body, params={"signature": kiwify_sign(body, KIWIFY_TOKEN)}
    )
    assert approved.status_code == 200 and approved.json()["status"] == "accepted", approved.text
    event = stack.wait_event(approved.json()["event_id"])
    assert (event["status"], event["type"], event["source"]) == ("processed", "PURCHASE_APPROVED", "kiwify"), event
    code = subscriber(fakes).fields["codigo_discord"]
    assert len(code) == 8
    assert subscriber(fakes).tags == {"aluno-curso"}
    assert [ns for _, ns, _ in fakes.manychat.flows_sent] == [course.flows["onboarding"]]
    assert fakes.discord.member_roles(ANA["discord_id"]) == set()

    # 3. /registrar with the code (the command handler's service): the course's role and welcome.
    service = LinkService(sessions, RulesRepository(rules_dir), remote_enqueue(redis_url))
    outcome = service.link(int(ANA["discord_id"]), code)
    assert (outcome.outcome, outcome.reply) == ("linked", rules.onboarding.replies["linked"])
    assert stack.wait_event(outcome.event_id)["status"] == "processed"
    stack.wait_for(lambda: fakes.discord.member_roles(ANA["discord_id"]) == {COURSE_ROLE}, what="the course role")
    stack.wait_for(
        lambda: [ns for _, ns, _ in fakes.manychat.flows_sent] == [course.flows[f] for f in ("onboarding", "welcome")],
        what="the welcome flow",
    )
    with sessions() as session:
        student = session.scalars(select(Student)).one()
        assert (student.discord_id, [m.state for m in student.memberships]) == (ANA["discord_id"], ["active"])


@pytest.fixture
def world(make_harness, tmp_path):
    """The in-process world on the rules sold on every platform, Kiwify and Eduzz turned on."""
    with ExitStack() as stack:
        yield stack.enter_context(
            open_world(
                make_harness,
                rules_dir=rules_sold_on_every_platform(tmp_path),
                kiwify_enabled=True,
                kiwify_token=KIWIFY_TOKEN,
                eduzz_enabled=True,
                eduzz_secret=EDUZZ_SECRET,
            )
        )


def deliver_kiwify(w: World, payload: dict) -> int:
    """POST a Kiwify webhook signed with the token (must be accepted), run the queue; the event id."""
    body = json.dumps(payload).encode()
    response = w.api.post("/webhooks/kiwify", content=body, params={"signature": kiwify_sign(body, KIWIFY_TOKEN)})
    assert response.status_code == 200 and response.json()["status"] == "accepted", response.text
    w.h.run_queue()
    return response.json()["event_id"]


def community_on_kiwify(fixture: str) -> dict:
    """A Kiwify order of the community: the course's fixture, sold as the monthly subscription."""
    payload = json.loads(kiwify_body(fixture))
    renewal = json.loads(kiwify_body("subscription_renewed"))
    payload["Product"] = renewal["Product"]
    payload["subscription_id"], payload["Subscription"] = renewal["subscription_id"], renewal["Subscription"]
    payload["order_id"] = "3c3c3c3c-0000-4000-8000-000000000003"
    return payload


def test_story_40_hotmart_and_kiwify_one_student_a_kiwify_refund_removes_only_the_community(world: World):
    """40. Hotmart and Kiwify, one student. Ana owns the course through Hotmart and subscribes to
    the community on Kiwify: one student, one code, one Discord link, both products' access; a
    Kiwify refund removes only the community's access (its role and tag), the course's stay."""
    w = world
    assert w.rules.products["comunidade"].source_ids["kiwify"] == (KIWIFY_COMMUNITY,)
    w.clock.now = datetime(2026, 3, 10, 14, 5, tzinfo=UTC)  # the Kiwify order's day, after it was paid

    w.deliver(hotmart("purchase_approved"))  # the course, on Hotmart
    deliver_kiwify(w, community_on_kiwify("order_approved"))  # the community, on Kiwify
    assert w.states() == {"curso": "pending_onboarding", "comunidade": "pending_onboarding"}
    with w.runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Student)) == 1
    assert {(e.source, e.type) for e in w.events()} == {
        ("hotmart", "PURCHASE_APPROVED"),
        ("kiwify", "PURCHASE_APPROVED"),
    }

    outcome = w.register(w.code())  # one code for the student, whichever platform sold what
    assert (outcome.outcome, outcome.reply) == ("linked", w.reply("linked"))
    assert w.states() == {"curso": "active", "comunidade": "active"}
    assert w.student().discord_id == ANA_DISCORD
    assert w.roles() == {COURSE_ROLE, COMMUNITY_ROLE}
    assert w.subscriber().tags == {"aluno-curso", "assinante"}

    w.clock.now = datetime(2026, 3, 12, 9, 31, tzinfo=UTC)  # just after the refund's updated_at
    refund_id = deliver_kiwify(w, community_on_kiwify("order_refunded"))
    assert (w.event(refund_id).source, w.event(refund_id).type, w.event(refund_id).status) == (
        "kiwify",
        "PURCHASE_REFUNDED",
        "processed",
    )
    assert w.states() == {"curso": "active", "comunidade": "refunded"}
    assert w.roles() == {COURSE_ROLE}
    assert w.subscriber().tags == {"aluno-curso"}
    assert [(product, flow) for product, flow in w.flows() if flow == "refund"] == [("comunidade", "refund")]


def test_story_41_an_eduzz_invoice_with_two_products_grants_both(world: World):
    """41. An Eduzz invoice with two products. One paid invoice (signed with the secret key, as
    Eduzz's Developer Hub sends it) grants both products it holds: two memberships, one code, and
    after `/registrar` both roles and both tags. The same invoice again is a duplicate."""
    w = world
    w.manychat.seed_subscriber(email=BIA_EMAIL, whatsapp_phone="+5521988880002", first_name="Bia")
    w.discord.add_member(BIA_DISCORD)
    w.clock.now = datetime(2026, 3, 10, 14, 5, tzinfo=UTC)  # just after the invoice was paid
    body = (DATA / "eduzz" / "invoice_paid_two_products.json").read_bytes()
    assert [item["productId"] for item in json.loads(body)["data"]["items"]] == ["123456", "654321"]

    def post():
        return w.api.post("/webhooks/eduzz", content=body, headers={"x-signature": eduzz_sign(body, EDUZZ_SECRET)})

    paid = post()
    assert paid.status_code == 200 and paid.json()["status"] == "accepted", paid.text
    w.h.run_queue()
    events = w.events()
    assert [(e.source, e.type, e.status) for e in events] == [("eduzz", "PURCHASE_APPROVED", "processed")] * 2
    assert w.states() == {"curso": "pending_onboarding", "comunidade": "pending_onboarding"}
    bia = w.manychat.find(email=BIA_EMAIL)
    assert bia.tags == {"aluno-curso", "assinante"}

    outcome = w.register(bia.fields["codigo_discord"], user=BIA_DISCORD)
    assert (outcome.outcome, outcome.reply) == ("linked", w.reply("linked"))
    assert w.states() == {"curso": "active", "comunidade": "active"}
    assert w.roles(BIA_DISCORD) == {COURSE_ROLE, COMMUNITY_ROLE}
    assert {product for product, flow in w.flows() if flow == "welcome"} == {"curso", "comunidade"}

    again = post()
    assert again.status_code == 200 and again.json() == {"status": "duplicate"}
    assert [e.source for e in w.events()].count("eduzz") == 2
