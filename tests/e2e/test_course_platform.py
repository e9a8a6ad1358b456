"""Story 46 (SCENARIOS.md, "The course platform"): the course platform hears about its classes.

The world of tests/e2e/scenario_fixtures.py with the fake course platform served beside the fake
Discord and ManyChat, told by the real classes connector over HTTP. The fake verifies every
signature with the ``standardwebhooks`` library and acts once per ``webhook-id``, as the docs tell
a real platform to (docs/operations/course-platform.md).
"""

from __future__ import annotations

import json
from contextlib import ExitStack

import pytest

from tests.e2e.scenario_fixtures import ANA_DISCORD, ANA_EMAIL, World, hotmart, open_world

APPROVED, REFUNDED = "purchase_approved", "purchase_refunded"  # course C, one transaction
CLASS = "curso-2026"


@pytest.fixture
def make_world(make_harness):
    with ExitStack() as stack:
        yield lambda **options: stack.enter_context(open_world(make_harness, **options))


def buy_and_link(w: World) -> int:
    """Ana buys the course and types her code on Discord; the link event's id."""
    w.deliver(hotmart(APPROVED, new_id=False))
    outcome = w.register(w.code())
    assert outcome.outcome == "linked"
    return outcome.event_id


def test_story_46_enrolled_where_the_exercises_are(make_world):
    """Ana links Discord: the platform receives one signed class.enrollment.created for curso-2026
    (it verifies the signature and deduplicates on the webhook id); after her refund it receives
    the deletion. The engine's own table follows, as its ledger."""
    w = make_world(course_platform=True)
    platform = w.course
    w.deliver(hotmart(APPROVED, new_id=False))
    assert platform.deliveries == []  # the class comes with the link, not the purchase
    link_id = w.register(w.code()).event_id

    [created] = platform.accepted()
    assert len(platform.deliveries) == 1 and created.verified
    assert created.message["type"] == "class.enrollment.created"
    assert created.message["data"] == {
        "class_key": CLASS,
        "class_name": w.rules.classes[CLASS],
        "student_id": w.student().id,
        "email": ANA_EMAIL,
        "name": w.student().name,
        "discord_id": ANA_DISCORD,
        "product": "curso",
        "membership_state": "active",
        "event_id": link_id,
    }
    step = w.step(link_id, "enroll")
    assert (step.status, step.attempts) == ("done", 1)
    assert created.webhook_id == f"msg_{step.id}_{CLASS}"
    assert platform.members(CLASS) == {ANA_EMAIL} and w.classes() == {CLASS}
    assert w.event(link_id).status == "processed"

    refund_id = w.deliver(hotmart(REFUNDED, new_id=False))

    assert w.states() == {"curso": "refunded"}
    deleted = platform.accepted()[-1]
    assert len(platform.deliveries) == 2 and deleted.verified
    assert (deleted.message["type"], deleted.message["data"]["membership_state"]) == (
        "class.enrollment.deleted",
        "refunded",
    )
    assert deleted.message["data"]["event_id"] == refund_id
    assert platform.members(CLASS) == set() and w.classes() == set()
    assert ("curso", "class", CLASS) not in w.grants()
    assert w.alerts() == []


def test_the_platform_down_for_a_minute_gets_the_enrollment_on_the_retry(make_world):
    """The platform answers 503 while it is down: the step waits RETRY_DELAY_SECONDS, the engine's
    table is not written yet; back up, the retry delivers it under the same webhook id, once."""
    w = make_world(course_platform=True)
    platform = w.course
    platform.fail(503, times=0)  # down until it recovers
    link_id = buy_and_link(w)

    step = w.step(link_id, "enroll")
    assert (step.status, step.error, step.attempts) == ("retrying", "classes.unavailable", 1)
    assert w.event(link_id).status == "retrying"
    assert w.classes() == set() and platform.members(CLASS) == set()

    platform.recover()
    w.drain_retries()

    step = w.step(link_id, "enroll")
    assert (step.status, step.attempts) == ("done", 2)
    assert w.event(link_id).status == "processed"
    [first, second] = platform.deliveries
    assert (first.status, second.status) == (503, 200)
    assert first.webhook_id == second.webhook_id == f"msg_{step.id}_{CLASS}"
    assert platform.members(CLASS) == {ANA_EMAIL} and w.classes() == {CLASS}
    assert w.alerts() == []


def test_a_platform_that_stays_down_alerts_an_admin_and_an_admin_retry_delivers(make_world):
    """Still down at the retry: the step fails, an admin is alerted (the Discord channel too), the
    engine's table stays as it was; once the platform is back an admin's retry delivers it."""
    w = make_world(course_platform=True)
    platform = w.course
    platform.fail(503, times=0)
    link_id = buy_and_link(w)
    w.drain_retries()

    step = w.step(link_id, "enroll")
    assert (step.status, step.error, step.attempts) == ("failed", "classes.unavailable", 2)
    assert w.event(link_id).status == "failed"
    [alert] = w.alerts()
    assert alert.kind == "classes.unavailable" and "HTTP 503" in alert.message
    assert any("classes.unavailable" in message or "HTTP 503" in message for message in w.channel())
    assert w.classes() == set() and ("curso", "class", CLASS) not in w.grants()
    assert [d.status for d in platform.deliveries] == [503, 503]

    platform.recover()
    assert w.admin("POST", f"/admin/events/{link_id}/retry").status_code == 202
    w.h.run_queue()
    assert w.event(link_id).status == "processed"
    assert platform.members(CLASS) == {ANA_EMAIL} and w.classes() == {CLASS}
    assert len({d.webhook_id for d in platform.deliveries}) == 1  # the same message all along


def test_a_refused_signature_alerts_at_once(make_world):
    """The platform verifies with another secret: 401, which a retry cannot fix: failed at once."""
    w = make_world(course_platform=True)
    w.course.secret = "whsec_b3RoZXItc2VjcmV0LW9mLXRoZS1wbGF0Zm9ybQ=="
    link_id = buy_and_link(w)

    step = w.step(link_id, "enroll")
    assert (step.status, step.error, step.attempts) == ("failed", "classes.unauthorized", 1)
    assert w.h.drains == []  # no automatic retry
    [alert] = w.alerts()
    assert "COURSE_WEBHOOK_SECRET" in alert.message
    assert [d.verified for d in w.course.deliveries] == [False]
    assert w.classes() == set()


def test_with_the_webhook_off_the_engines_table_alone(make_world):
    """COURSE_WEBHOOK_ENABLED off (as shipped): the step is done in the engine's own table and says
    no webhook went out; the refund takes the class out again."""
    w = make_world()
    link_id = buy_and_link(w)

    step = w.step(link_id, "enroll")
    assert step.status == "done" and "COURSE_WEBHOOK_ENABLED is off" in step.detail
    assert w.classes() == {CLASS} and ("curso", "class", CLASS) in w.grants()
    w.deliver(hotmart(REFUNDED, new_id=False))
    assert w.classes() == set()


def test_a_repeated_message_is_acted_on_once(make_world):
    """The platform's side of idempotency: the same signed message twice changes nothing."""
    w = make_world(course_platform=True)
    buy_and_link(w)
    [created] = w.course.accepted()
    body = created.body
    status, reply = w.course.receive(body, _resigned(created.webhook_id, body))
    assert (status, reply) == (200, {"duplicate": True})
    assert len(w.course.accepted()) == 1 and w.course.members(CLASS) == {ANA_EMAIL}
    assert json.loads(body)["data"]["class_key"] == CLASS


def _resigned(msg_id: str, body: bytes) -> dict[str, str]:
    """Headers of a fresh attempt of the same message (a new timestamp, the same id)."""
    import time

    from connectors.course_platform import sign, signing_key
    from tests.fakes.course_platform_app import SECRET

    now = int(time.time())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(now),
        "webhook-signature": sign(signing_key(SECRET), msg_id, now, body),
    }


def test_reconcile_restores_a_lost_enrollment_and_tells_the_platform(make_world):
    """Someone deleted Ana's row from the engine's table: `engine reconcile` (all) enrolls her again
    with an ordinary enroll step, so the platform receives a new created message (a new step: a new
    webhook id), verified, and still holds Ana once."""
    from engine.db.models import ClassEnrollment
    from engine.reconcile import compute, run_reconcile

    w = make_world(course_platform=True)
    buy_and_link(w)
    with w.runtime.sessions.begin() as session:
        session.query(ClassEnrollment).delete()
    assert {(c.kind, c.resource) for c in compute(w.runtime).diff.grants} == {("class", CLASS)}

    run_reconcile(w.runtime, mode="all")
    w.h.run_queue()

    first, again = w.course.accepted()
    assert again.message["type"] == "class.enrollment.created" and again.webhook_id != first.webhook_id
    assert w.course.members(CLASS) == {ANA_EMAIL} and w.classes() == {CLASS}
    assert compute(w.runtime).diff.empty


COURSE_TOKEN = "course-read-token-e2e-7d1"


def test_story_46_a_platform_that_polls_with_a_read_only_token_mirrors_the_class(make_world):
    """The last sentence of story 46: a platform that prefers polling to the webhooks (left off, as
    shipped) mirrors the class with its own read-only token. Ana's purchase and link enroll her: the
    poller sees her; her refund: the poller sees the tombstone. The admin token opens nothing there."""
    from tests.conftest import ADMIN_TOKEN
    from tests.fakes.course_poller import PollingPlatform

    w = make_world(course_api_token=COURSE_TOKEN)
    platform = PollingPlatform(w.api, COURSE_TOKEN)
    assert platform.poll(CLASS) == []
    cursor = platform.cursors[CLASS]

    w.deliver(hotmart(APPROVED, new_id=False))
    assert platform.poll(CLASS) == [] and platform.cursors[CLASS] == cursor  # the class comes with the link
    w.register(w.code())

    [enrolled] = platform.poll(CLASS)
    ana = w.student()
    assert {key: enrolled[key] for key in ("email", "student_id", "discord_id", "product", "removed")} == {
        "email": ANA_EMAIL,
        "student_id": ana.id,
        "discord_id": ANA_DISCORD,
        "product": "curso",
        "removed": False,
    }
    assert enrolled["membership_state"] == "active" and platform.emails(CLASS) == {ANA_EMAIL}
    classes = w.api.get("/api/v1/classes", headers={"Authorization": f"Bearer {COURSE_TOKEN}"}).json()["items"]
    assert {c["key"]: c["enrollments"] for c in classes} == {CLASS: 1}

    w.deliver(hotmart(REFUNDED, new_id=False))
    [tombstone] = platform.poll(CLASS)
    assert (tombstone["email"], tombstone["removed"], tombstone["membership_state"]) == (ANA_EMAIL, True, "refunded")
    assert platform.emails(CLASS) == set() == w.classes()
    assert platform.poll(CLASS) == []  # nothing new, nothing again

    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    for path in ("/api/v1/classes", f"/api/v1/classes/{CLASS}/enrollments"):
        assert w.api.get(path, headers=admin).status_code == 401
    assert w.admin("GET", "/admin/events").status_code == 200  # the admin token still opens the admin API
    assert w.api.get("/admin/events", headers={"Authorization": f"Bearer {COURSE_TOKEN}"}).status_code == 401


def test_the_poller_and_the_webhook_receiver_agree(make_world):
    """Both paths on: what the platform received by webhook and what a poller mirrors are the same."""
    from tests.fakes.course_poller import PollingPlatform

    w = make_world(course_platform=True, course_api_token=COURSE_TOKEN)
    poller = PollingPlatform(w.api, COURSE_TOKEN)
    buy_and_link(w)
    poller.poll(CLASS)
    assert poller.emails(CLASS) == w.course.members(CLASS) == {ANA_EMAIL}
    w.deliver(hotmart(REFUNDED, new_id=False))
    poller.poll(CLASS)
    assert poller.emails(CLASS) == w.course.members(CLASS) == set()
    assert [item["removed"] for item in poller.received] == [False, True]
