"""`engine import-students --from hotmart`: today's students read from Hotmart (an in-memory
account, tests/fakes/hotmart_store.py) and placed in the state the shipped rules give them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

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
from engine.service.hotmart_import import OnboardingOff, import_from_hotmart
from engine.service.student_import import read_discord_ids
from engine.sources.hotmart.api_items import FULL_SCAN_FROM
from tests.fakes.hotmart_store import HotmartStore, InMemoryHotmart
from tests.purchases import COMUNIDADE_ID, purchase

pytestmark = pytest.mark.integration

CURSO, COMUNIDADE, COMBO = "1111111", "2222222", "3333333"  # the shipped rules' Hotmart ids
BIA_DISCORD = "80351110224678912"
IDS = f"email,discord_id,phone\nbia@example.com,{BIA_DISCORD},11 98888-7777\nzoe@example.com,80351110224678999,\n"
ROWS = (Student, Membership, OnboardingToken, ScheduledEvent, Grant, Event, ActionRun, History)


@pytest.fixture
def h(make_harness):
    return make_harness()


@pytest.fixture
def store(h) -> HotmartStore:
    """Who Hotmart knows, as of the harness's clock (2026-03-02 12:00 UTC)."""
    now = h.clock()
    s = HotmartStore(now=h.clock)
    year_ago = now - timedelta(days=365)
    s.add_subscription(COMUNIDADE, "ana@example.com", accession=year_ago)  # active, unlinked
    s.add_subscription(COMUNIDADE, "bia@example.com", accession=year_ago)  # active, linked by the file
    late = s.add_subscription(COMUNIDADE, "carla@example.com", accession=year_ago)  # late 2 days: in grace
    s.set_subscription_status(late["subscriber_code"], "DELAYED", date_next_charge=now - timedelta(days=2))
    old = s.add_subscription(COMUNIDADE, "dora@example.com", accession=year_ago)  # late 20 days
    s.set_subscription_status(old["subscriber_code"], "OVERDUE", date_next_charge=now - timedelta(days=20))
    paid = s.add_subscription(COMUNIDADE, "eva@example.com", accession=year_ago)  # cancelled, paid 10 more days
    s.set_subscription_status(
        paid["subscriber_code"], "CANCELLED_BY_CUSTOMER", date_next_charge=now + timedelta(days=10)
    )
    gone = s.add_subscription(COMUNIDADE, "fabi@example.com", accession=year_ago)  # cancelled, access over
    s.set_subscription_status(gone["subscriber_code"], "CANCELLED_BY_ADMIN", date_next_charge=now - timedelta(days=3))
    s.add_subscription(COMUNIDADE, "gil@example.com", accession=year_ago, status="INACTIVE")
    s.add_sale(CURSO, "Hugo@Example.com", approved=now - timedelta(days=900))  # a one-off purchase, long ago
    s.add_sale(CURSO, "ines@example.com", status="COMPLETE", approved=now - timedelta(days=40))
    s.add_sale(CURSO, "joao@example.com", status="REFUNDED")
    return s


def run(h, store, **options):
    ids = options.pop("ids", None)
    if ids is not None:
        options["discord_ids"], errors = read_discord_ids(ids, h.runtime.rules.rules, "ids.csv")
        assert errors == []
    return import_from_hotmart(h.runtime, InMemoryHotmart(store), **options)


def counts(h) -> dict[str, int]:
    with h.runtime.sessions() as session:
        return {model.__name__: session.scalar(select(func.count()).select_from(model)) for model in ROWS}


def states(h) -> dict[tuple[str, str], str]:
    with h.runtime.sessions() as session:
        return {(m.student.email, m.product_key): m.state for m in session.scalars(select(Membership))}


def sent(h) -> list[tuple[str, str]]:
    """The ManyChat and Discord steps the connectors received: (action, main parameter)."""
    return [(step.action, ctx.student.email) for step, ctx in h.manychat.calls + h.discord.calls]


def test_every_holding_with_access_gets_the_state_the_rules_give_it(h, store):
    report = run(h, store, ids=IDS)
    assert report.errors == []
    assert states(h) == {
        ("ana@example.com", "comunidade"): "pending_onboarding",  # paid, waits for /registrar
        ("bia@example.com", "comunidade"): "active",  # linked by the file
        ("carla@example.com", "comunidade"): "pending_onboarding",  # unlinked: the rules ignore a delay then
        ("dora@example.com", "comunidade"): "pending_onboarding",
        ("eva@example.com", "comunidade"): "cancelled",
        ("hugo@example.com", "curso"): "pending_onboarding",
        ("ines@example.com", "curso"): "pending_onboarding",
    }
    assert dict(report.without_access["comunidade"]) == {"churned": 1}  # fabi's paid period is over
    assert report.discord_ids_joined == 1 and report.discord_ids_unmatched == ["zoe@example.com"]
    with h.runtime.sessions() as session:
        bia = session.scalar(select(Student).where(Student.email == "bia@example.com"))
        assert (bia.discord_id, bia.phone) == (BIA_DISCORD, "+5511988887777")
        timers = {
            (t.event_type, t.due_at) for t in session.scalars(select(ScheduledEvent))
        }  # the lifecycle's, not the onboarding's
        assert timers == {("ACCESS_ENDS", h.clock() + timedelta(days=10))}
        codes = session.scalars(select(OnboardingToken)).all()
        holders = sorted(session.get(Student, code.student_id).email for code in codes)
        assert holders == [
            "ana@example.com",
            "carla@example.com",
            "dora@example.com",
            "eva@example.com",
            "hugo@example.com",
            "ines@example.com",
        ]
        assert {code.expires_at for code in codes} == {h.clock() + timedelta(days=7)}
        eva = session.scalar(select(Membership).join(Student).where(Student.email == "eva@example.com"))
        assert eva.subscriber_code and eva.transaction and eva.paid_until == h.clock() + timedelta(days=10)
        history = session.scalars(select(History).where(History.membership_id == eva.id)).one()
        assert history.kind == "imported" and history.detail["hotmart_status"] == "CANCELLED_BY_CUSTOMER"
        assert history.detail["transitions"] == ["purchase_not_linked", "cancelled_keeps_paid_period"]
    assert counts(h)["Event"] == 0 and sent(h) == []  # nothing sent, nothing queued
    assert report.codes == 6 and report.onboarding == [] and h.queued == []


def test_the_full_scan_reads_hotmarts_whole_history_not_its_30_day_default(h, store):
    reader = InMemoryHotmart(store)
    import_from_hotmart(h.runtime, reader, dry_run=True)
    subscriptions = [query for kind, query in reader.queries if kind == "subscriptions"]
    assert {q["product_id"] for q in subscriptions} == {COMUNIDADE, COMBO}
    assert all(q["accession_from"] == FULL_SCAN_FROM for q in subscriptions)
    sales = [query for kind, query in reader.queries if kind == "sales"]
    assert [(q["product_id"], q["start"], q["statuses"]) for q in sales] == [(CURSO, FULL_SCAN_FROM, ())]


def test_a_late_subscriber_who_is_linked_is_overdue_with_the_rest_of_the_grace(h, store):
    ids = "email,discord_id\ncarla@example.com,80351110224678913\ndora@example.com,80351110224678914\n"
    report = run(h, store, ids=ids, product_keys=["comunidade"])
    assert states(h)[("carla@example.com", "comunidade")] == "overdue"
    assert ("dora@example.com", "comunidade") not in states(h)  # late 20 days: the 7-day grace is over
    assert dict(report.without_access["comunidade"]) == {"churned": 2}
    with h.runtime.sessions() as session:
        timer = session.scalar(
            select(ScheduledEvent).join(Membership).join(Student).where(Student.email == "carla@example.com")
        )
    # The delay started with the charge that failed, two days ago: five days of the seven left.
    assert (timer.event_type, timer.due_at) == ("GRACE_EXPIRED", h.clock() + timedelta(days=5))


def test_running_it_again_changes_nothing(h, store):
    first = run(h, store, ids=IDS)
    before = counts(h)
    again = run(h, store, ids=IDS)
    assert counts(h) == before
    assert again.memberships_created == 0 and again.students_created == 0 and again.codes == 0
    assert sum(again.existing.values()) == first.memberships_created == 7


def test_dry_run_reports_and_writes_nothing(h, store):
    report = run(h, store, dry_run=True, onboard=True)
    assert report.memberships_created == 7 and len(report.onboarding) == 7 and h.queued == []
    assert set(counts(h).values()) == {0}
    lines = report.summary()
    assert lines[0] == "read 8 subscription(s) and purchase(s) from Hotmart (combo, comunidade, curso)"
    assert lines[1] == "combo: would create 0 membership(s); 0 already there"
    assert lines[2].startswith("comunidade: would create 5 membership(s) (1 cancelled, 4 pending_onboarding)")
    assert "; 0 already there; not imported, no access under the rules: 1 churned" in lines[2]
    assert lines[3:5] == [
        "  cancelled: eva@example.com",
        "  pending_onboarding: ana@example.com, bia@example.com, carla@example.com, ...",
    ]
    assert "onboarding: would queue 7 (code, flow, reminders), sent by the worker" in lines


def test_onboard_sends_each_waiting_student_the_onboarding_once(h, store):
    report = run(h, store, onboard=True, product_keys=["curso"])
    assert len(report.onboarding) == 2 and report.codes == 0
    assert h.queued == report.onboarding  # queued once committed
    h.run_queue()
    flows = [
        (step.params["flow_ns"], ctx.student.email) for step, ctx in h.manychat.calls if step.action == "trigger_flow"
    ]
    assert flows == [
        ("content20261101000000_000001", "hugo@example.com"),
        ("content20261101000000_000001", "ines@example.com"),
    ]
    with h.runtime.sessions() as session:
        hugo = session.scalar(select(Student).where(Student.email == "hugo@example.com"))
        code = session.scalars(select(OnboardingToken).where(OnboardingToken.student_id == hugo.id)).one()
        field = next(s for s, c in h.manychat.calls if s.action == "set_field" and c.student.email == hugo.email)
        assert field.params["value"] == code.code  # the code the student is sent is the one that works
        timers = sorted(t.event_type for t in session.scalars(select(ScheduledEvent)))
        assert timers == ["ONBOARDING_REMINDER", "ONBOARDING_REMINDER", "TOKEN_EXPIRED", "TOKEN_EXPIRED"]
        statuses = {e.status for e in session.scalars(select(Event))}
    assert statuses == {"processed"}
    calls = len(h.manychat.calls)
    again = run(h, store, onboard=True, product_keys=["curso"])
    assert again.onboarding == [] and h.queued == []
    h.run_queue()
    assert len(h.manychat.calls) == calls


def test_onboard_later_reaches_the_students_an_earlier_import_left_waiting(h, store):
    run(h, store, product_keys=["curso"])
    with h.runtime.sessions() as session:
        held = set(session.scalars(select(OnboardingToken.code)))
    report = run(h, store, onboard=True, product_keys=["curso"])
    assert len(report.onboarding) == 2 and report.memberships_created == 0
    h.run_queue()
    assert sorted(c.student.email for s, c in h.manychat.calls if s.action == "trigger_flow") == [
        "hugo@example.com",
        "ines@example.com",
    ]
    with h.runtime.sessions() as session:
        revoked = {t.code: t.revoked_reason for t in session.scalars(select(OnboardingToken))}
    assert {revoked[code] for code in held} == {"replaced"}  # the unsent codes make way for the sent ones


def test_onboard_leaves_alone_a_membership_the_pipeline_moved_since(h, store):
    run(h, store, product_keys=["comunidade"], ids=IDS)
    # Ana's renewal webhook: applied to her imported membership (the rules send her a new code then).
    renewal = purchase("ana@example.com", envelope="renewal-1", product_id=COMUNIDADE_ID)
    h.deliver(renewal)
    report = run(h, store, onboard=True, product_keys=["comunidade"], ids=IDS)
    with h.runtime.sessions() as session:
        emails = {session.get(Event, event_id).email for event_id in report.onboarding}
    assert emails == {"carla@example.com", "dora@example.com", "eva@example.com"}


def after_import(h, email: str, product_id: str, template: str, *, minutes: int) -> dict:
    """A webhook of the imported purchase, created ``minutes`` after the import."""
    with h.runtime.sessions() as session:
        transaction = session.scalar(select(Membership.transaction).join(Student).where(Student.email == email))
    body = purchase(email, envelope=f"{email}-{minutes}", transaction=transaction, template=template)
    body["data"]["product"]["id"] = int(product_id)
    body["creation_date"] = int(h.clock().timestamp() * 1000) + minutes * 60_000
    return body


def test_a_late_webhook_replays_an_onboarded_import_from_the_import_not_from_scratch(h, store):
    """Hugo, imported with --onboard, waits for /registrar. Two webhooks of his purchase come after
    the import, the later-created first: the earlier one's replay starts from the import, where his
    onboarding stands as it was sent. His code, its reminders and its expiry stay; nothing is sent
    again; the dispute reaches the admins once."""
    run(h, store, onboard=True, product_keys=["curso"])
    h.run_queue()
    h.deliver(after_import(h, "hugo@example.com", CURSO, "purchase_complete.json", minutes=2))  # ignored now
    protest = h.deliver(after_import(h, "hugo@example.com", CURSO, "purchase_protest.json", minutes=1))

    with h.runtime.sessions() as session:
        hugo = session.scalar(select(Student).where(Student.email == "hugo@example.com"))
        membership = session.scalar(select(Membership).where(Membership.student_id == hugo.id))
        event = session.get(Event, protest)
        timers = session.execute(
            select(ScheduledEvent.event_type, ScheduledEvent.status).where(
                ScheduledEvent.membership_id == membership.id
            )
        ).all()
        codes = session.scalars(
            select(OnboardingToken).where(OnboardingToken.student_id == hugo.id, OnboardingToken.revoked_at.is_(None))
        ).all()
    assert event.status == "processed"
    assert [(e["transition"], e["from_state"]) for e in event.plans[0]["reordered"]["history"]] == [
        ("purchase_not_linked", "new"),  # the import's onboarding, as it was planned
        ("dispute_noted", "pending_onboarding"),
    ]
    assert [step["action"] for step in event.plans[0]["steps"]] == ["alert"]
    assert membership.state == "pending_onboarding"
    assert sorted(timers) == [("ONBOARDING_REMINDER", "pending"), ("TOKEN_EXPIRED", "pending")]
    assert len(codes) == 1
    sent = [s.action for s, c in h.manychat.calls if c.student.email == "hugo@example.com"]
    assert sent.count("trigger_flow") == 1 and sent.count("set_field") == 1


def test_a_late_webhook_keeps_the_timers_the_import_set(h, store):
    """Eva cancelled with 10 days paid left: imported cancelled, her access ending with the paid
    period (a timer). A dispute's notice arriving after a later webhook is replayed from the
    import: the timer that ends her access stays."""
    run(h, store, product_keys=["comunidade"], ids=IDS)
    h.deliver(after_import(h, "eva@example.com", COMUNIDADE, "purchase_complete.json", minutes=2))
    protest = h.deliver(after_import(h, "eva@example.com", COMUNIDADE, "purchase_protest.json", minutes=1))
    with h.runtime.sessions() as session:
        event = session.get(Event, protest)
        membership = session.scalar(select(Membership).join(Student).where(Student.email == "eva@example.com"))
        timers = session.execute(
            select(ScheduledEvent.event_type, ScheduledEvent.status).where(
                ScheduledEvent.membership_id == membership.id
            )
        ).all()
    assert [(e["transition"], e["from_state"]) for e in event.plans[0]["reordered"]["history"]] == [
        ("dispute_noted", "cancelled")
    ]
    assert [step["action"] for step in event.plans[0]["steps"]] == ["alert"]
    assert membership.state == "cancelled"
    assert timers == [("ACCESS_ENDS", "pending")]


def test_onboard_is_refused_while_the_connector_it_needs_is_off(make_harness, store):
    h = make_harness()
    from engine.pipeline.runtime import DisabledConnector

    off = DisabledConnector("manychat", frozenset(), "MANYCHAT_ENABLED")
    for action in ("add_tag", "set_field", "trigger_flow"):
        h.runtime.connectors[action] = off
    with pytest.raises(OnboardingOff, match="MANYCHAT_ENABLED is off"):
        import_from_hotmart(h.runtime, InMemoryHotmart(store), onboard=True)
    assert set(counts(h).values()) == {0}


def test_adopted_access_is_what_the_rules_gave_each_state(h, store):
    report = run(h, store, ids=IDS, adopt_access=True, product_keys=["comunidade"])
    with h.runtime.sessions() as session:
        grants = {
            tuple(row) for row in session.execute(select(Student.email, Grant.kind, Grant.resource).join(Student))
        }
    assert grants == {
        ("ana@example.com", "manychat_tag", "assinante"),  # waiting: the tag, not the role
        ("bia@example.com", "manychat_tag", "assinante"),
        ("bia@example.com", "discord_role", "1180000000000000002"),
        ("carla@example.com", "manychat_tag", "assinante"),
        ("dora@example.com", "manychat_tag", "assinante"),
        ("eva@example.com", "manychat_tag", "assinante"),
    }
    assert report.grants_recorded == 6


def test_a_discord_id_of_another_student_imports_nothing(h, store):
    run(h, store, product_keys=["curso"], ids=f"email,discord_id\nhugo@example.com,{BIA_DISCORD}\n")
    before = counts(h)
    report = run(h, store, product_keys=["comunidade"], ids=IDS)
    assert report.errors == [
        f"hotmart subscription {store.all_subscriptions()[1]['subscriber_code']} (bia@example.com, comunidade): "
        f"discord_id {BIA_DISCORD} is linked to hugo@example.com"
    ]
    assert counts(h) == before


def test_products_to_import_are_checked(h, store):
    with pytest.raises(LookupError, match=r"unknown product 'cursinho' \(products: "):
        import_from_hotmart(h.runtime, InMemoryHotmart(store), product_keys=["cursinho"])


def test_items_hotmart_sends_unreadable_are_skipped_and_named(h, store):
    store.add_subscription(COMUNIDADE, "not an e-mail", accession=h.clock() - timedelta(days=3), subscriber_code="BAD1")
    report = run(h, store, product_keys=["comunidade"])
    assert report.unusable == ["subscription BAD1: subscriber.email: not an e-mail address"]
    assert report.memberships_created == 5


def test_the_discord_ids_file_is_read_as_the_csv_import_reads_its_file(h):
    rules = h.runtime.rules.rules
    text = (
        "email;discord_id\nana@example.com;123\nana@example.com;80351110224678912\nbia@example.com;80351110224678913\n"
    )
    found, errors = read_discord_ids(text, rules, "ids.csv")
    assert errors == [
        "ids.csv:2: discord_id '123' is not a Discord id",
    ]
    assert set(found) == {"ana@example.com", "bia@example.com"}
    twice = "email,discord_id\nana@example.com,80351110224678912\nana@example.com,80351110224678913\n"
    _, errors = read_discord_ids(twice, rules, "ids.csv")
    assert errors == ["ids.csv:3: ana@example.com has discord_id 80351110224678912 on line 2"]


def test_a_buyer_with_several_subscriptions_is_placed_by_the_one_that_counts(h, store):
    gone = store.add_subscription(COMUNIDADE, "ana@example.com", accession=h.clock() - timedelta(days=800))
    store.set_subscription_status(gone["subscriber_code"], "CANCELLED_BY_CUSTOMER", date_next_charge=h.clock())
    report = run(h, store, product_keys=["comunidade"])
    assert report.read == 7 and report.memberships_created == 5
    with h.runtime.sessions() as session:
        ana = session.scalar(select(Membership).join(Student).where(Student.email == "ana@example.com"))
    assert ana.state == "pending_onboarding" and ana.subscriber_code != gone["subscriber_code"]
