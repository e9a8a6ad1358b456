"""The owner's migration, step 4, as the operator runs it: `engine import-students --from hotmart`
reads 400 students from the fake Hotmart API over HTTP (tests/fakes/hotmart_api_app.py) while
`engine serve` + `engine worker` run against the fake Discord and ManyChat."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from engine.db.models import ActionRun, Event, Membership, OnboardingToken, Student
from engine.db.session import session_factory
from engine.settings import Settings
from tests.cli import Ran, run_engine
from tests.fakes.hotmart_api_app import CLIENT_ID, CLIENT_SECRET, TOKEN_PATH, FakeHotmartApi, basic_token, create_app
from tests.fakes.hotmart_store import HotmartStore
from tests.fakes.server import serve

COMUNIDADE, CURSO = "2222222", "1111111"  # the shipped rules' Hotmart product ids
SUBSCRIBERS, BUYERS, WAITING = 300, 100, 5  # the last WAITING buyers have no Discord id in the file
ONBOARDING_FLOW = "content20261101000000_000001"  # curso's onboarding flow


def hotmart_account() -> HotmartStore:
    now = datetime.now(UTC)
    store = HotmartStore()
    for n in range(SUBSCRIBERS):
        store.add_subscription(COMUNIDADE, f"assinante{n:03d}@example.com", accession=now - timedelta(days=n + 1))
    for n in range(BUYERS):
        store.add_sale(CURSO, f"aluno{n:03d}@example.com", approved=now - timedelta(days=n + 1))
    return store


def discord_ids(path: Path) -> Path:
    """The spreadsheet of who is already in the Discord server: everyone but the waiting buyers."""
    emails = [f"assinante{n:03d}@example.com" for n in range(SUBSCRIBERS)]
    emails += [f"aluno{n:03d}@example.com" for n in range(BUYERS - WAITING)]
    rows = [f"{email};{10**17 + index}" for index, email in enumerate(emails)]
    path.write_text("email;discord_id\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def counts(pg: str) -> dict[str, int]:
    sessions = session_factory(Settings(ENGINE_ENV="test", database_url=pg))
    with sessions() as session:
        return {
            model.__name__: session.scalar(select(func.count()).select_from(model))
            for model in (Student, Membership, OnboardingToken, Event, ActionRun)
        }


@pytest.mark.slow
def test_story_43_400_students_imported_idempotent_and_onboarded_only_when_asked(pg, start_stack, fakes, tmp_path):
    """43. Migration from Hotmart. 300 subscribers and 100 buyers imported from Hotmart's API:
    each gets the product's membership (active, or waiting for the Discord link when the file
    has no Discord id), nobody receives a WhatsApp message, and importing again changes nothing;
    only `--onboard` sends the waiting buyers their code, once."""
    waiting = [f"aluno{n:03d}@example.com" for n in range(BUYERS - WAITING, BUYERS)]
    for email in waiting:  # their WhatsApp contacts exist in ManyChat
        fakes.manychat.seed_subscriber(email=email, whatsapp_phone="+5511999990099", first_name="Aluno")
    stack = start_stack()
    ids = discord_ids(tmp_path / "discord.csv")
    with serve(create_app(FakeHotmartApi(store=hotmart_account()))) as url:
        env = {
            **stack.env,
            "HOTMART_CLIENT_ID": CLIENT_ID,
            "HOTMART_CLIENT_SECRET": CLIENT_SECRET,
            "HOTMART_BASIC": basic_token(),
            "HOTMART_AUTH_URL": f"{url}{TOKEN_PATH}",
            "HOTMART_API_BASE": url,
        }

        def import_students(*args: str) -> Ran:
            ran = run_engine(env, "import-students", "--from", "hotmart", "--discord-ids", str(ids), *args)
            assert ran.returncode == 0, ran.output
            return ran

        first = import_students()
        assert "comunidade: created 300 membership(s) (300 active); 0 already there" in first.stdout
        assert "curso: created 100 membership(s) (95 active, 5 pending_onboarding); 0 already there" in first.stdout
        assert "Discord ids: 395 joined" in first.stdout
        imported = counts(pg)
        assert imported == {"Student": 400, "Membership": 400, "OnboardingToken": 5, "Event": 0, "ActionRun": 0}
        assert fakes.manychat.flows_sent == []  # nothing queued, nothing sent

        again = import_students()
        assert "comunidade: created 0 membership(s); 300 already there" in again.stdout
        assert counts(pg) == imported

        onboard = import_students("--onboard")
        assert "onboarding: queued 5 (code, flow, reminders), sent by the worker" in onboard.stdout
        stack.wait_for(lambda: len(fakes.manychat.flows_sent) == WAITING, timeout=60, what="the 5 onboarding flows")
        stack.wait_for(
            lambda: {stack.event(event_id)["status"] for event_id in range(1, WAITING + 1)} == {"processed"},
            what="the onboarding events",
        )
        onboarded = {fakes.manychat.subscribers[sid].email for sid, _, _ in fakes.manychat.flows_sent}
        assert onboarded == set(waiting)
        assert {ns for _, ns, _ in fakes.manychat.flows_sent} == {ONBOARDING_FLOW}
        for sid, _, _ in fakes.manychat.flows_sent:
            assert len(fakes.manychat.subscribers[sid].fields["codigo_discord"]) == 8  # the code they type

        once_more = import_students("--onboard")
        assert "onboarding: queued 0" in once_more.stdout
        assert counts(pg)["Event"] == WAITING  # no second onboarding to send
        assert len(fakes.manychat.flows_sent) == WAITING
