"""One student's access (the admin page's student view): what the rules want, what the ledger says,
what Discord and ManyChat hold now (read for this student alone, from the fake servers on loopback),
and reconciling that one student behind the same guard and lock as ``engine reconcile``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import func, select

from connectors.discord import DiscordConnector
from connectors.manychat import ManyChatConnector
from engine.db.models import Alert, Event, Grant, History, Membership, Student
from engine.pipeline.classes import enroll_student
from engine.reconcile.runs import exclusive
from engine.reconcile.student import DISABLED, FAILED, NOT_IN_SERVER, OWN_TABLE, READ, compute_student
from engine.service.student_access import (
    MUST,
    NO,
    NOT_ALLOWED,
    NOT_GRANTED,
    Busy,
    is_students_event,
    reconcile_one,
    student_access,
)
from tests.conftest import DISCORD_ACTIONS, MANYCHAT_ACTIONS, shipped_rules
from tests.fakes import discord_app, manychat_app
from tests.fakes.server import serve

pytestmark = pytest.mark.integration

TOKEN = "student-access-token"
ANA, DISCORD_ID = "ana@example.com", "80351110224678912"
COURSE_ROLE = discord_app.COURSE_ROLE_ID
TAG, CLASS = "aluno-curso", "curso-2026"


@dataclass
class Live:
    h: object
    discord: discord_app.FakeDiscord
    manychat: manychat_app.FakeManyChat


@pytest.fixture
def live(make_harness) -> Iterator[Live]:
    """A harness whose Discord and ManyChat steps and reads go to the fake servers."""
    discord = discord_app.create_app(token=TOKEN)
    manychat = manychat_app.create_app(token=TOKEN)
    with serve(discord) as discord_url, serve(manychat) as manychat_url:
        discord_connector = DiscordConnector(TOKEN, discord_app.GUILD_ID, api_base=f"{discord_url}/api/v10")
        manychat_connector = ManyChatConnector(TOKEN, api_base=manychat_url)
        registry = {action: discord_connector for action in DISCORD_ACTIONS}
        registry |= {action: manychat_connector for action in MANYCHAT_ACTIONS}
        try:
            yield Live(make_harness(connectors=registry), discord.state.fake, manychat.state.fake)
        finally:
            discord_connector.close()
            manychat_connector.close()


def seed(h, *, state: str = "active", discord_id: str | None = DISCORD_ID, owned=(("discord_role", COURSE_ROLE),)):
    """Ana in curso, in ``state``; the ledger says the engine granted ``owned``."""
    with h.runtime.sessions.begin() as session:
        student = Student(email=ANA, discord_id=discord_id)
        session.add(student)
        session.flush()
        membership = Membership(student_id=student.id, product_key="curso", state=state)
        session.add(membership)
        session.flush()
        for kind, resource in owned:
            session.add(Grant(student_id=student.id, membership_id=membership.id, kind=kind, resource=resource))
        return student.id


def by_resource(access) -> dict[str, object]:
    return {row.resource: row for row in access.rows}


def test_the_rows_say_what_the_rules_want_and_what_the_ledger_has(make_harness):
    h = make_harness()
    seed(h, owned=[("discord_role", COURSE_ROLE), ("manychat_tag", "ex-assinante")])
    rows = by_resource(student_access(h.runtime, shipped_rules(), ANA))
    assert (rows[COURSE_ROLE].wanted, rows[COURSE_ROLE].granted, rows[COURSE_ROLE].difference) == (
        MUST,
        "applied",
        None,
    )
    assert (rows[TAG].wanted, rows[TAG].granted, rows[TAG].difference) == (MUST, "no", NOT_GRANTED)
    assert rows[CLASS].difference == NOT_GRANTED
    # Granted by the engine, not allowed while active in curso: reconcile would revoke it if held.
    assert (rows["ex-assinante"].wanted, rows["ex-assinante"].difference) == (NO, NOT_ALLOWED)
    assert all(row.held is None and row.change is None for row in rows.values())  # nothing read


def test_an_unknown_student_has_no_access_rows_and_no_events(make_harness):
    h = make_harness()
    assert student_access(h.runtime, shipped_rules(), "nobody@example.com") is None
    with h.runtime.sessions() as session:
        assert not is_students_event(session, "nobody@example.com", 1)


def test_what_discord_and_manychat_hold_is_read_for_this_student_alone(live: Live):
    student_id = seed(live.h)
    live.discord.add_member(DISCORD_ID, roles=[])  # the engine granted R_course; someone took it
    live.discord.add_member("80351110224678999", roles=[COURSE_ROLE])  # someone else: never listed
    live.manychat.seed_tags(TAG)
    live.manychat.seed_subscriber(email=ANA, tags={TAG})
    world = compute_student(live.h.runtime, student_id)
    assert [(read.kind, read.status, read.detail) for read in world.reads] == [
        ("discord_role", READ, ""),
        ("manychat_tag", READ, ""),
        ("class", OWN_TABLE, "COURSE_WEBHOOK_ENABLED is off"),  # no course platform: the engine's table
    ]
    assert {(c.kind, c.resource) for c in world.report.diff.grants} == {("discord_role", COURSE_ROLE), ("class", CLASS)}
    assert world.report.diff.revokes == []
    # Get Guild Member for Ana, not the guild's member list.
    assert [request["path"] for request in live.discord.requests] == [
        f"/guilds/{discord_app.GUILD_ID}/members/{DISCORD_ID}"
    ]
    rows = by_resource(student_access(live.h.runtime, shipped_rules(), ANA, live=True))
    assert (rows[COURSE_ROLE].held, rows[COURSE_ROLE].change) == (False, "grant")
    assert (rows[TAG].held, rows[TAG].change) == (True, None)
    assert (rows[CLASS].held, rows[CLASS].change) == (False, "grant")


def test_a_student_not_in_the_server_or_a_service_that_refuses_is_said_so(live: Live):
    student_id = seed(live.h)
    live.manychat.token = "another-token"  # ManyChat answers 401
    world = compute_student(live.h.runtime, student_id)
    reads = {read.kind: read for read in world.reads}
    assert reads["discord_role"].status == NOT_IN_SERVER
    assert [finding.email for finding in world.report.not_in_server] == [ANA]
    assert reads["manychat_tag"].status == FAILED and reads["manychat_tag"].detail.startswith("manychat.")
    assert "manychat_tag" not in world.report.checked
    assert world.held_now("discord_role", COURSE_ROLE) is None


def test_disabled_connectors_are_not_read(make_harness):
    h = make_harness()  # recording connectors: no reads
    world = compute_student(h.runtime, seed(h))
    assert [(read.kind, read.status) for read in world.reads][:2] == [
        ("discord_role", DISABLED),
        ("manychat_tag", DISABLED),
    ]
    assert world.report.checked == ["class"]


def test_reconciling_one_student_applies_only_their_diff_with_the_note(make_harness):
    h = make_harness()
    ana = seed(h)
    with h.runtime.sessions.begin() as session:  # another student missing the same class: left alone
        other = Student(email="bia@example.com")
        session.add(other)
        session.flush()
        session.add(Membership(student_id=other.id, product_key="curso", state="active"))
    applied = reconcile_one(h.runtime, ANA, actor="admin:ana", note="support ticket 12")
    assert applied.grants == 1 and applied.revokes == 0 and len(applied.events) == 1
    with h.runtime.sessions() as session:
        event = session.get(Event, applied.events[0])
        assert event.student_id == ana and event.type == "RECONCILE"
        history = session.scalars(select(History).where(History.kind == "reconcile")).all()
    assert [(row.student_id, row.actor, row.detail["note"]) for row in history] == [
        (ana, "admin:ana", "support ticket 12")
    ]


def test_the_guard_holds_one_students_revocations_past_the_limit(make_harness):
    h = make_harness(reconcile_max_revokes=0)
    seed(h, state="refunded", owned=[("class", CLASS)])
    with h.runtime.sessions.begin() as session:
        enroll_student(session, session.scalar(select(Student.id)), CLASS)
    held = reconcile_one(h.runtime, ANA, actor="admin:ana", note=None)
    assert held.held and held.events == [] and h.queued == []
    with h.runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Alert).where(Alert.kind == "reconcile.guard")) == 1
        (row,) = session.scalars(select(History).where(History.kind == "reconcile")).all()
    assert row.detail == {"steps": [], "held": True, "revokes": 1, "alert_id": held.alert_id}
    confirmed = reconcile_one(h.runtime, ANA, actor="admin:ana", note=None, confirm=True)
    assert not confirmed.held and confirmed.revokes == 1 and h.queued == confirmed.events


def test_one_reconcile_at_a_time(make_harness):
    h = make_harness()
    seed(h)
    with exclusive(h.runtime), pytest.raises(Busy):
        reconcile_one(h.runtime, ANA, actor="admin:ana", note=None)
    with h.runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(History)) == 0
