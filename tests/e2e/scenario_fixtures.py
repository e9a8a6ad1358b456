"""A fast end-to-end world for the SCENARIOS stories (tests/e2e/test_scenarios.py).

One process, real pieces: the fake Discord and fake ManyChat servers run in threads
(``tests.fakes.server.serve``) and are reached over HTTP by the REAL connectors
(``DiscordConnector`` for roles and the admin channel, ``ManyChatConnector`` for tags,
fields and flows); the pipeline runs on the real PostgreSQL through ``make_harness``
(manual queue, controllable clock); webhooks go in through the FastAPI app
(``TestClient``), ``/registrar`` through the bot's ``LinkService``, timers through the
sweep's ``fire_due_timers``. What the tests read back is what an operator sees: the fake
guild's member roles and admin-channel messages, the fake ManyChat contact's tags, fields
and flows, and the database (memberships, class enrollments, events, alerts).
"""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from fastapi.testclient import TestClient
from sqlalchemy import select

from connectors.classes import ClassesConnector
from connectors.discord import DiscordConnector
from connectors.manychat import ManyChatConnector
from engine.api.app import create_app
from engine.db.models import (
    ActionRun,
    Alert,
    ClassEnrollment,
    CourseClass,
    Event,
    Grant,
    Membership,
    OnboardingToken,
    ScheduledEvent,
    Student,
)
from engine.onboarding.linking import LinkOutcome, LinkService
from engine.pipeline.alerts import notify_alerts
from engine.pipeline.execution import OPEN_STATUSES, drain_student
from engine.pipeline.locks import student_lock
from engine.pipeline.sweep import fire_due_timers
from tests.conftest import ADMIN_TOKEN, HOTTOK, Harness, load_payload, shipped_rules
from tests.fakes import discord_app, manychat_app
from tests.fakes.server import serve

if TYPE_CHECKING:
    from tests.fakes.course_platform_app import FakeCoursePlatform

FAKE_TOKEN = "test-token"
GUILD_ID = discord_app.GUILD_ID
ALERT_CHANNEL = discord_app.ALERT_CHANNEL_ID
ANA_EMAIL = "ana.exemplo@example.com"
ANA_DISCORD = "80351110224678912"
ANA_PHONE = "+5511999990001"
COURSE_ROLE = "1180000000000000001"  # R_course (curso, combo)
COMMUNITY_ROLE = "1180000000000000002"  # R_community (comunidade, combo)
VIP_ROLE = "1180000000000000003"  # given by hand; no product grants it

COURSE_ID, COMMUNITY_ID, BUNDLE_ID = 1111111, 2222222, 3333333

_ids = itertools.count(1)


def hotmart(
    name: str,
    *,
    product_id: int | None = None,
    transaction: str | None = None,
    creation_date: int | None = None,
    new_id: bool = True,
    **purchase: object,
) -> dict:
    """A reference payload (examples/hotmart/NAME.json), adapted.

    ``new_id``: a new envelope id (a new event, not a redelivery). ``purchase`` keys are set
    in ``data.purchase`` (e.g. ``recurrence_number=3``); ``date_next_charge`` goes where the
    file keeps it.
    """
    payload = copy.deepcopy(load_payload(name if name.endswith(".json") else f"{name}.json"))
    data = payload["data"]
    if new_id:
        payload["id"] = f"{payload['id']}-e2e-{next(_ids)}"
    if product_id is not None:
        data["product"]["id"] = product_id
    if transaction is not None:
        data.setdefault("purchase", {})["transaction"] = transaction
    if creation_date is not None:
        payload["creation_date"] = creation_date
    for key, value in purchase.items():
        if key == "date_next_charge" and "date_next_charge" in data:
            data["date_next_charge"] = value
        else:
            data.setdefault("purchase", {})[key] = value
    return payload


def epoch_ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def seed_manychat(fake: manychat_app.FakeManyChat, rules, *, ana: bool = True) -> None:
    """Tags, fields and flows named by the rules; Ana's WhatsApp contact (unless ``ana`` is False)."""
    fake.seed_tags(*sorted(rules.manychat_tags))
    fake.seed_fields(*sorted(rules.manychat_fields))
    fake.seed_flows({ns: name for product in rules.products.values() for name, ns in product.flows.items()})
    if ana:
        seed_ana(fake)


def seed_ana(fake: manychat_app.FakeManyChat) -> manychat_app.FakeSubscriber:
    return fake.seed_subscriber(email=ANA_EMAIL, whatsapp_phone=ANA_PHONE, first_name="Ana")


@dataclass
class World:
    h: Harness
    discord: discord_app.FakeDiscord
    manychat: manychat_app.FakeManyChat
    discord_connector: DiscordConnector
    manychat_connector: ManyChatConnector
    api: TestClient
    links: LinkService
    flow_names: dict[str, tuple[str, str]] = field(default_factory=dict)  # ns -> (product, flow)
    course: FakeCoursePlatform | None = None  # with course_platform=True

    @property
    def runtime(self):
        return self.h.runtime

    @property
    def rules(self):
        return self.h.runtime.rules.rules

    @property
    def clock(self):
        return self.h.clock

    def reply(self, outcome: str) -> str:
        return self.rules.onboarding.replies[outcome]

    # -- inputs ------------------------------------------------------------------------

    def post(self, payload: dict):
        return self.api.post(
            "/webhooks/hotmart", content=json.dumps(payload).encode(), headers={"X-HOTMART-HOTTOK": HOTTOK}
        )

    def deliver(self, payload: dict) -> int:
        """POST a webhook (must be accepted), run the queue; the event id."""
        response = self.post(payload)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "accepted", response.json()
        self.h.run_queue()
        return response.json()["event_id"]

    def register(self, code: str, user: str = ANA_DISCORD) -> LinkOutcome:
        """``/registrar codigo:<code>`` typed by Discord ``user``; the worker runs what it queued."""
        outcome = self.links.link(user, code)
        self.h.run_queue()
        return outcome

    def fire_timers(self) -> list[int]:
        fired = fire_due_timers(self.runtime)
        self.h.run_queue()
        return fired

    def drain_retries(self, *, extra_seconds: float = 1.0) -> None:
        """Let the retry delay pass and run what is due, as the scheduled drain task would."""
        self.clock.advance(seconds=self.runtime.settings.retry_delay_seconds + extra_seconds)
        with self.runtime.sessions() as session:
            students = set(session.scalars(select(Event.student_id).where(Event.status.in_(OPEN_STATUSES))))
        for student_id in students:
            with student_lock(self.runtime.sessions, student_id):
                drain_student(self.runtime, student_id)
        notify_alerts(self.runtime)

    def admin(self, method: str, path: str, **kwargs):
        return self.api.request(method, path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, **kwargs)

    # -- what the operator sees: the outside world ----------------------------------------

    def roles(self, user: str = ANA_DISCORD) -> set[str] | None:
        return self.discord.member_roles(user)

    def role_requests(self) -> list[tuple[str, str]]:
        return [(r["method"], r["path"]) for r in self.discord.requests if "/roles/" in r["path"]]

    def channel(self) -> list[str]:
        return [m["content"] for m in self.discord.messages.get(ALERT_CHANNEL, [])]

    def subscriber(self) -> manychat_app.FakeSubscriber:
        found = self.manychat.find(email=ANA_EMAIL)
        assert found is not None, "Ana has no ManyChat contact"
        return found

    def code(self) -> str:
        """The onboarding code ManyChat holds for Ana (what she reads on WhatsApp)."""
        return self.subscriber().fields["codigo_discord"]

    def flows(self) -> list[tuple[str, str]]:
        """Every flow ManyChat sent, in order, as (product key, logical flow name)."""
        return [self.flow_names[ns] for _, ns, _ in self.manychat.flows_sent]

    def manychat_writes(self) -> list[str]:
        return [path.rsplit("/", 1)[-1] for method, path in self.manychat.requests if method == "POST"]

    # -- what the operator sees: the database ---------------------------------------------

    def event(self, event_id: int) -> Event:
        with self.runtime.sessions() as session:
            found = session.get(Event, event_id)
            found.action_runs  # noqa: B018 - load while the session is open
            return found

    def steps(self, event_id: int) -> list[ActionRun]:
        return self.event(event_id).action_runs

    def step(self, event_id: int, action: str) -> ActionRun:
        [found] = [r for r in self.steps(event_id) if r.action == action]
        return found

    def events(self, event_type: str | None = None) -> list[Event]:
        with self.runtime.sessions() as session:
            query = select(Event).order_by(Event.id)
            if event_type:
                query = query.where(Event.type == event_type)
            return list(session.scalars(query))

    def states(self) -> dict[str, str]:
        with self.runtime.sessions() as session:
            return {m.product_key: m.state for m in session.scalars(select(Membership))}

    def membership(self, product: str) -> Membership:
        with self.runtime.sessions() as session:
            return session.scalars(select(Membership).where(Membership.product_key == product)).one()

    def student(self, email: str = ANA_EMAIL) -> Student | None:
        with self.runtime.sessions() as session:
            return session.scalar(select(Student).where(Student.email == email))

    def grants(self) -> set[tuple[str, str, str]]:
        """(product, kind, resource) of the ledger."""
        with self.runtime.sessions() as session:
            rows = session.execute(
                select(Membership.product_key, Grant.kind, Grant.resource).join(
                    Membership, Grant.membership_id == Membership.id
                )
            ).all()
            return {tuple(row) for row in rows}

    def classes(self, email: str = ANA_EMAIL) -> set[str]:
        with self.runtime.sessions() as session:
            return set(
                session.scalars(
                    select(CourseClass.key)
                    .join(ClassEnrollment, ClassEnrollment.class_id == CourseClass.id)
                    .join(Student, ClassEnrollment.student_id == Student.id)
                    .where(Student.email == email, ClassEnrollment.removed_at.is_(None))
                )
            )

    def tokens(self) -> list[OnboardingToken]:
        with self.runtime.sessions() as session:
            return list(session.scalars(select(OnboardingToken).order_by(OnboardingToken.id)))

    def timers(self, product: str | None = None) -> list[tuple[str, str, datetime]]:
        with self.runtime.sessions() as session:
            query = (
                select(ScheduledEvent.event_type, ScheduledEvent.status, ScheduledEvent.due_at)
                .join(Membership, ScheduledEvent.membership_id == Membership.id)
                .order_by(ScheduledEvent.id)
            )
            if product:
                query = query.where(Membership.product_key == product)
            return [tuple(row) for row in session.execute(query)]

    def alerts(self) -> list[Alert]:
        with self.runtime.sessions() as session:
            return list(session.scalars(select(Alert).order_by(Alert.id)))

    def rule_alert(self, transition: str, product: str, **event_fields: str) -> str:
        """The alert text a transition's rule renders for Ana (the rules' own words)."""
        rule = next(t for t in self.rules.transitions if t.name == transition)
        [text] = [spec.args for spec in rule.steps if spec.action == "alert"]
        values = {
            "student.email": ANA_EMAIL,
            "product.name": self.rules.products[product].name,
            **{f"event.{k}": v for k, v in event_fields.items()},
        }
        for key, value in values.items():
            text = text.replace("{" + key + "}", value)
        return text


@contextmanager
def open_world(
    make_harness,
    *,
    route_limit: int = 50,
    route_window: float = 1.0,
    global_limit: int = 50,
    discord_global_rate: float = 50.0,
    manychat_timeout: float = 10.0,
    ana_in_manychat: bool = True,
    ana_in_guild: bool = True,
    course_platform: bool = False,
    course_reads: bool = False,
    **settings,
) -> Iterator[World]:
    """Fakes served in threads, real connectors pointed at them, a harness on PostgreSQL; with
    ``course_platform``, the fake course platform too, told by the real classes connector; with
    ``course_reads`` as well, reconcile reads the platform's enrollments (COURSE_ENROLLMENTS_URL; a
    read tried again does not pause)."""
    rules = shipped_rules()
    discord_asgi = discord_app.create_app(
        token=FAKE_TOKEN, route_limit=route_limit, route_window=route_window, global_limit=global_limit
    )
    manychat_asgi = manychat_app.create_app(token=FAKE_TOKEN)
    fake_discord: discord_app.FakeDiscord = discord_asgi.state.fake
    fake_manychat: manychat_app.FakeManyChat = manychat_asgi.state.fake
    fake_discord.add_role(COMMUNITY_ROLE, "Comunidade", position=2)
    if ana_in_guild:
        fake_discord.add_member(ANA_DISCORD)
    seed_manychat(fake_manychat, rules, ana=ana_in_manychat)
    if course_platform:  # imported only when asked for: it needs the standardwebhooks test package
        from tests.fakes import course_platform_app

        course_asgi = course_platform_app.create_app()
        course_secret = course_platform_app.SECRET
    with (
        serve(discord_asgi) as discord_url,
        serve(manychat_asgi) as manychat_url,
        # Served only when asked for: most stories leave the webhook off, as it ships.
        serve(course_asgi) if course_platform else nullcontext(None) as course_url,
    ):
        discord = DiscordConnector(
            FAKE_TOKEN,
            GUILD_ID,
            api_base=f"{discord_url}/api/v10",
            alert_channel_id=ALERT_CHANNEL,
            global_rate=discord_global_rate,
        )
        manychat = ManyChatConnector(FAKE_TOKEN, api_base=manychat_url, timeout=manychat_timeout)
        connectors = {action: discord for action in discord.actions}
        connectors.update({action: manychat for action in manychat.actions})
        classes = None
        if course_url is not None:
            reads = {"enrollments_url": f"{course_url}/enrollments", "sleep": lambda _: None} if course_reads else {}
            classes = ClassesConnector(f"{course_url}/webhooks", course_secret, timeout=5.0, **reads)
            connectors.update({action: classes for action in classes.actions})
        h = make_harness(connectors=connectors, **settings)
        h.runtime.alert_sink = discord
        links = LinkService(h.runtime.sessions, h.runtime.rules, h.queued.append, clock=h.clock)
        flow_names = {ns: (p.key, name) for p in rules.products.values() for name, ns in p.flows.items()}
        try:
            with TestClient(create_app(h.runtime)) as api:
                course = course_asgi.state.fake if classes is not None else None
                yield World(h, fake_discord, fake_manychat, discord, manychat, api, links, flow_names, course)
        finally:
            discord.close()
            manychat.close()
            if classes is not None:
                classes.close()
