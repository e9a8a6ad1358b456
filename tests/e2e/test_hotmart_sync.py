"""`engine sync hotmart` on the deployed shape: `engine serve` + `engine worker` on PostgreSQL and
Redis, the fake Discord and ManyChat, and the fake Hotmart API over HTTP (tests/fakes/
hotmart_api_app.py: OAuth, paging, its rate limit, 429s on demand). The command runs as an admin
types it (tests/cli.py); what it stores, the running worker applies."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from engine.db.session import session_factory
from engine.onboarding.linking import LinkService
from engine.pipeline.rules_repository import RulesRepository
from engine.settings import Settings
from tests.cli import run_engine
from tests.conftest import RULES, load_payload, wait_until
from tests.e2e.conftest import ANA, remote_enqueue
from tests.fakes import hotmart_api_app
from tests.fakes.hotmart_store import HotmartStore
from tests.fakes.server import serve

COURSE_ROLE = "1180000000000000001"
CURSO = "1111111"
TRANSACTION = "HP7000000000001"


@pytest.fixture
def hotmart() -> Iterator[tuple[hotmart_api_app.FakeHotmartApi, dict[str, str]]]:
    """The fake Hotmart API on loopback, and the settings that point the engine at it."""
    fake = hotmart_api_app.FakeHotmartApi(store=HotmartStore())
    with serve(hotmart_api_app.create_app(fake)) as url:
        yield (
            fake,
            {
                "HOTMART_CLIENT_ID": hotmart_api_app.CLIENT_ID,
                "HOTMART_CLIENT_SECRET": hotmart_api_app.CLIENT_SECRET,
                "HOTMART_BASIC": hotmart_api_app.basic_token(),
                "HOTMART_AUTH_URL": url + hotmart_api_app.TOKEN_PATH,
                "HOTMART_API_BASE": url,
            },
        )


def webhook(template: str, at: datetime, envelope: str) -> bytes:
    """A reference payload of Ana's purchase as Hotmart sends it today."""
    body = copy.deepcopy(load_payload(template))
    body["id"], body["creation_date"] = envelope, int(at.timestamp() * 1000)
    body["data"]["purchase"]["transaction"] = TRANSACTION
    if "approved_date" in body["data"]["purchase"]:
        body["data"]["purchase"]["approved_date"] = int(at.timestamp() * 1000)
    return json.dumps(body).encode()


def flows_sent(fakes) -> list[str]:
    return [ns for _, ns, _ in fakes.manychat.flows_sent]


def role_requests(fakes) -> list[str]:
    return [r["method"] for r in fakes.discord.requests if r["path"].endswith(f"/roles/{COURSE_ROLE}")]


def sync(stack, *args: str):
    done = run_engine(stack.env, "sync", "hotmart", *args)
    assert done.returncode == 0, done.output
    return done


@pytest.mark.slow
def test_story_42_a_refund_never_delivered_is_applied_once_and_its_webhook_changes_nothing(
    start_stack, fakes, hotmart, pg, redis_url
):
    """42. A refund Hotmart never delivered. Ana (linked, active) is refunded and the webhook
    never comes: the sync reports it, `--apply` applies it once (role removed, refund flow
    sent), the webhook that arrives at last is a duplicate, and syncing again finds nothing."""
    fake, credentials = hotmart
    stack = start_stack(**credentials)
    course = RulesRepository(RULES).rules.products["curso"]
    bought = datetime.now(UTC) - timedelta(days=3)
    fake.store.add_sale(CURSO, ANA["email"], transaction=TRANSACTION, approved=bought, name="Ana Exemplo Souza")
    approved = stack.post_webhook(webhook("purchase_approved.json", bought, "ap-1"))
    stack.wait_event(approved.json()["event_id"])
    sessions = session_factory(Settings(ENGINE_ENV="test", database_url=pg))
    code = next(s for s in fakes.manychat.subscribers.values() if s.email == ANA["email"]).fields["codigo_discord"]
    linked = LinkService(sessions, RulesRepository(RULES), remote_enqueue(redis_url)).link(int(ANA["discord_id"]), code)
    stack.wait_event(linked.event_id)
    assert fakes.discord.member_roles(ANA["discord_id"]) == {COURSE_ROLE}

    # Hotmart refunds her; the webhook never comes. Hotmart's API is busy too: two 429s.
    fake.store.set_sale_status(TRANSACTION, "REFUNDED")
    fake.fail(429, times=2, headers={"Retry-After": "1"})
    report = sync(stack)
    assert "  curso  PURCHASE_REFUNDED 1" in report.stdout.splitlines()
    assert f"  {ANA['email']}: PURCHASE_REFUNDED (curso, {TRANSACTION}, REFUNDED): active -> refunded" in report.stdout
    assert report.stdout.splitlines()[-1] == "run 1: report only; engine sync hotmart --apply stores them"
    assert fake.rate_limited == 2  # waited out, the run did not fail
    assert fakes.discord.member_roles(ANA["discord_id"]) == {COURSE_ROLE}  # a report changes nothing

    applied = sync(stack, "--apply")
    assert "run 2: stored 1 event(s); the worker applies them" in applied.stdout
    stack.wait_for(lambda: fakes.discord.member_roles(ANA["discord_id"]) == set(), what="the role removed")
    stack.wait_for(lambda: flows_sent(fakes)[-1:] == [course.flows["refund"]], what="the refund flow")
    [event] = stack.admin("/admin/events", params={"type": "PURCHASE_REFUNDED"}).json()["items"]
    assert (event["source"], event["origin"]) == ("hotmart", "hotmart-api")
    stack.wait_event(event["id"])

    # The refund's webhook arrives at last: the same change, a duplicate; nothing is sent again.
    removals = role_requests(fakes).count("DELETE")
    late = stack.post_webhook(webhook("purchase_refunded.json", datetime.now(UTC), "refund-late"))
    assert late.status_code == 200 and late.json() == {"status": "duplicate"}
    assert flows_sent(fakes) == [course.flows[name] for name in ("onboarding", "welcome", "refund")]
    assert role_requests(fakes).count("DELETE") == removals == 1

    again = sync(stack, "--apply")
    assert "0 change(s) no event brought" in again.stdout.splitlines()[0]
    last = sync(stack, "--last")
    assert last.stdout.splitlines()[0].startswith("run 3 (cli, all): reported")
    runs = stack.admin("/admin/sync/hotmart/runs").json()
    assert runs["total"] == 3 and [run["status"] for run in runs["items"]] == ["reported", "applied", "reported"]
    assert runs["items"][1]["counts"] == {"curso": {"PURCHASE_REFUNDED": 1}}
    assert runs["items"][1]["applied"]["events"] == [event["id"]]
    as_json = json.loads(sync(stack, "--json").stdout)  # a script's view of a run: nothing left to catch up
    assert (as_json["run_id"], as_json["applied"]) == (4, None)


@pytest.mark.slow
def test_an_approval_never_delivered_grants_and_its_late_webhook_is_a_duplicate(start_stack, fakes, hotmart):
    fake, credentials = hotmart
    stack = start_stack(**credentials)
    course = RulesRepository(RULES).rules.products["curso"]
    bought = datetime.now(UTC) - timedelta(hours=5)
    fake.store.add_sale(CURSO, ANA["email"], transaction=TRANSACTION, approved=bought, name="Ana Exemplo Souza")

    applied = sync(stack, "--apply", "--grants-only")
    assert "run 1: stored 1 event(s)" in applied.stdout
    stack.wait_for(lambda: flows_sent(fakes) == [course.flows["onboarding"]], what="the onboarding flow")
    subscriber = next(s for s in fakes.manychat.subscribers.values() if s.email == ANA["email"])
    assert len(subscriber.fields["codigo_discord"]) == 8 and "aluno-curso" in subscriber.tags

    late = stack.post_webhook(webhook("purchase_approved.json", bought, "approval-late"))
    assert late.json() == {"status": "duplicate"}
    wait_until(lambda: stack.admin("/admin/events").json()["total"] == 1, what="no second event")
    assert flows_sent(fakes) == [course.flows["onboarding"]]
