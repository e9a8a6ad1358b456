"""The worker side: ordering, staleness, crash recovery, retry-once-then-alert, the ledger."""

from __future__ import annotations

import copy
import json

import pytest
from sqlalchemy import select

from connectors.base import StepResult, StepStatus
from engine.db.models import ActionRun, Alert, Event, Grant, Membership, Student
from engine.pipeline.execution import drain_student
from engine.pipeline.intake import store_internal, store_webhook
from engine.pipeline.locks import student_lock
from engine.pipeline.processing import process_event
from engine.service.retry import retry_event
from engine.sources.hotmart import SOURCE as HOTMART
from tests.conftest import load_payload

DISCORD_ID = "80351110224678912"


def link(h, discord_id: str = DISCORD_ID, email: str = "ana.exemplo@example.com") -> int:
    with h.runtime.sessions.begin() as session:
        student = session.scalars(select(Student).where(Student.email == email)).one()
        previous = student.discord_id
        student.previous_discord_id, student.discord_id = previous, discord_id
        stored = store_internal(
            session,
            "DISCORD_LINKED",
            email=email,
            student_id=student.id,
            source="bot",
            fields={"discord_id": discord_id, "previous_discord_id": previous},
        )
    h.queued.append(stored.event_id)
    h.run_queue()
    return stored.event_id


def event(h, event_id: int) -> Event:
    with h.runtime.sessions() as session:
        found = session.get(Event, event_id)
        found.action_runs  # noqa: B018 - load while the session is open
        return found


def states(h) -> dict[str, str]:
    with h.runtime.sessions() as session:
        return {m.product_key: m.state for m in session.scalars(select(Membership))}


def grants(h) -> set[tuple[str, str]]:
    with h.runtime.sessions() as session:
        return {(g.kind, g.resource) for g in session.scalars(select(Grant))}


def with_product(payload: dict, product_id: int, transaction: str) -> dict:
    payload = copy.deepcopy(payload)
    payload["id"] = f"{payload['id']}-{product_id}-{transaction}"
    payload["data"]["product"]["id"] = product_id
    payload["data"]["purchase"]["transaction"] = transaction
    return payload


def test_refund_then_late_approval_keeps_access_revoked(make_harness):
    h = make_harness()
    approval = load_payload("purchase_approved.json")
    h.deliver(approval)
    link(h)
    refund = load_payload("purchase_refunded.json")
    h.deliver(refund)
    assert states(h) == {"curso": "refunded"}
    # The same purchase's approval, redelivered late by webhook under a new envelope id with its old
    # date: stored (two webhooks of one change are both kept) and ignored as stale.
    found = event(h, h.deliver({**copy.deepcopy(approval), "id": "late-redelivery"}))
    assert found.status == "ignored"
    assert found.reason.startswith("stale: transaction HP10000000000001 was refunded")
    assert states(h) == {"curso": "refunded"}
    assert grants(h) == set()


def test_a_change_brought_by_a_webhook_and_by_the_sync_is_stored_once_whichever_came_first(make_harness):
    h = make_harness()

    def store(body: dict, origin: str | None):
        with h.runtime.sessions.begin() as session:
            return store_webhook(HOTMART, session, json.dumps(body).encode(), {}, held=False, origin=origin)

    refund = load_payload("purchase_refunded.json")
    assert not store(refund, None).duplicate
    assert store({**refund, "id": "read-from-the-api"}, "hotmart-api").duplicate  # the webhook came first
    assert not store({**refund, "id": "second-webhook"}, None).duplicate  # two webhooks: both kept, dates decide
    approval = load_payload("purchase_approved.json")
    assert not store({**approval, "id": "read-from-the-api"}, "hotmart-api").duplicate
    assert store(approval, None).duplicate  # the sync came first: its webhook changes nothing
    assert store({**approval, "id": "read-again"}, "hotmart-api").duplicate
    with h.runtime.sessions() as session:
        kept = session.execute(select(Event.type, Event.origin).order_by(Event.id)).all()
    assert [tuple(row) for row in kept] == [
        ("PURCHASE_REFUNDED", None),
        ("PURCHASE_REFUNDED", None),
        ("PURCHASE_APPROVED", "hotmart-api"),
    ]


def test_an_approval_first_seen_after_its_refund_is_stale(make_harness):
    """The approval never came before the refund (another buyer's copy of the purchase): refused."""
    h = make_harness()
    h.deliver(load_payload("purchase_approved.json"))
    link(h)
    h.deliver(load_payload("purchase_refunded.json"))
    assert states(h) == {"curso": "refunded"}
    approval = {**load_payload("purchase_approved.json"), "id": "late-approval"}
    approval["data"]["purchase"]["status"] = "APPROVED"
    found = event(h, h.deliver({**approval, "event": "PURCHASE_COMPLETE"}))
    assert found.status == "ignored"
    assert found.reason.startswith("stale: transaction HP10000000000001 was refunded")
    assert states(h) == {"curso": "refunded"}
    assert grants(h) == set()


def test_an_event_older_than_the_last_applied_one_is_stale(make_harness):
    h = make_harness()
    h.deliver(load_payload("purchase_approved.json"))
    link(h)
    h.deliver(load_payload("purchase_refunded.json"))
    # Another purchase's approval, created before the refund, delivered after it.
    older = load_payload("purchase_approved.json")
    older["id"], older["data"]["purchase"]["transaction"] = "older-purchase", "HP1000000000077"
    found = event(h, h.deliver(older))
    assert found.status == "ignored" and found.reason.startswith("curso: stale: created")
    assert states(h) == {"curso": "refunded"}


def test_buying_again_after_refund_grants_again(make_harness):
    h = make_harness()
    h.deliver(load_payload("purchase_approved.json"))
    link(h)
    h.deliver(load_payload("purchase_refunded.json"))
    again = load_payload("purchase_approved.json")
    again["id"], again["creation_date"] = "new-purchase", load_payload("purchase_refunded.json")["creation_date"] + 1
    again["data"]["purchase"]["transaction"] = "HP1999"
    h.deliver(again)
    assert states(h) == {"curso": "active"}  # already linked: straight to active
    assert ("discord_role", "1180000000000000001") in grants(h)


class WorkerKilled(BaseException):
    """Stands for the process dying: not an error a connector reports."""


def test_worker_killed_mid_event_resumes_without_repeating_done_steps(make_harness):
    h = make_harness()
    calls = {"n": 0}

    def dies_on_second_manychat_call(step, ctx):
        calls["n"] += 1
        if calls["n"] == 2:
            raise WorkerKilled()
        return StepResult.done("ok")

    for action in ("add_tag", "set_field", "trigger_flow"):
        h.manychat.results[action] = dies_on_second_manychat_call
    with h.runtime.sessions.begin() as session:
        stored = store_webhook(
            HOTMART, session, json.dumps(load_payload("purchase_approved.json")).encode(), {}, held=False
        )
    with pytest.raises(WorkerKilled):
        process_event(h.runtime, stored.event_id)
    runs = event(h, stored.event_id).action_runs
    assert [(r.action, r.status) for r in runs[:3]] == [
        ("issue_token", "done"),
        ("add_tag", "done"),
        ("set_field", "pending"),  # idempotent: nothing marks it; it simply runs again
    ]
    process_event(h.runtime, stored.event_id)  # the restarted worker
    runs = event(h, stored.event_id).action_runs
    assert all(r.status == "done" for r in runs)
    assert h.manychat.actions_called() == ["add_tag", "set_field", "set_field", "trigger_flow"]
    assert [r.attempts for r in runs] == [1] * 6  # a try cut short by the worker dying is no attempt


def test_worker_killed_while_sending_a_flow_never_resends_it(make_harness):
    h = make_harness()

    def dies(step, ctx):
        raise WorkerKilled()

    h.manychat.results["trigger_flow"] = dies
    with h.runtime.sessions.begin() as session:
        stored = store_webhook(
            HOTMART, session, json.dumps(load_payload("purchase_approved.json")).encode(), {}, held=False
        )
    with pytest.raises(WorkerKilled):
        process_event(h.runtime, stored.event_id)
    h.manychat.results["trigger_flow"] = [StepResult.done("sent")]
    assert process_event(h.runtime, stored.event_id) == "failed"
    assert h.manychat.actions_called().count("trigger_flow") == 1
    with h.runtime.sessions() as session:
        alert = session.scalars(select(Alert)).one()
        assert alert.kind == "worker.interrupted" and "may have been delivered" in alert.message


def test_failing_step_is_retried_once_then_alerts_and_admin_retry_completes(make_harness):
    h = make_harness()
    down = StepResult.failed("manychat.unavailable", "503", retryable=True)
    h.manychat.results["add_tag"] = [down, down]
    event_id = h.deliver(load_payload("purchase_approved.json"))
    found = event(h, event_id)
    assert found.status == "retrying"
    assert [r.status for r in found.action_runs[:3]] == ["done", "retrying", "pending"]
    assert h.drains and h.drains[-1][1] == 30  # the retry is scheduled after the delay
    # Before the delay nothing runs again.
    with student_lock(h.runtime.sessions, found.student_id):
        drain_student(h.runtime, found.student_id)
    assert h.manychat.actions_called() == ["add_tag"]
    h.clock.advance(seconds=31)
    with student_lock(h.runtime.sessions, found.student_id):
        drain_student(h.runtime, found.student_id)
    found = event(h, event_id)
    assert found.status == "failed"
    failed = found.action_runs[1]
    assert (failed.status, failed.attempts, failed.error) == ("failed", 2, "manychat.unavailable")
    assert [r.status for r in found.action_runs[2:]] == ["pending"] * 4  # later steps wait
    with h.runtime.sessions() as session:
        alert = session.scalars(select(Alert)).one()
        assert alert.event_id == event_id and "Retried once already" in alert.message
    # The admin fixes ManyChat and retries: resumes from the failed step.
    assert retry_event(h.runtime, event_id) == "queued"
    h.run_queue()
    found = event(h, event_id)
    assert found.status == "processed" and all(r.status == "done" for r in found.action_runs)
    assert h.manychat.actions_called() == ["add_tag", "add_tag", "add_tag", "set_field", "trigger_flow"]


def test_non_retryable_failure_alerts_at_once(make_harness):
    h = make_harness()
    h.deliver(load_payload("purchase_approved.json"))
    h.discord.results["add_role"] = [StepResult.failed("discord.forbidden", "move the bot's role up")]
    event_id = link(h)
    found = event(h, event_id)
    assert found.status == "failed"
    role_step = next(r for r in found.action_runs if r.action == "add_role")
    assert (role_step.status, role_step.attempts) == ("failed", 1)
    with h.runtime.sessions() as session:
        assert "move the bot's role up" in session.scalars(select(Alert)).one().message


def test_flow_that_may_have_been_delivered_is_not_retried(make_harness):
    h = make_harness()
    h.manychat.results["trigger_flow"] = [
        StepResult.failed("manychat.unavailable", "timeout", retryable=False, maybe_delivered=True)
    ]
    event_id = h.deliver(load_payload("purchase_approved.json"))
    assert event(h, event_id).status == "failed"
    assert h.drains == []
    with h.runtime.sessions() as session:
        assert "may have been delivered" in session.scalars(select(Alert)).one().message


def test_access_is_a_union_refunding_one_product_keeps_what_the_bundle_grants(make_harness):
    h = make_harness()
    base = load_payload("purchase_approved.json")
    h.deliver(base)  # curso
    link(h)
    bundle = with_product(base, 3333333, "HP3000000000001")
    h.deliver(bundle)  # combo, already linked: active at once
    assert states(h) == {"curso": "active", "combo": "active"}
    h.deliver(load_payload("purchase_refunded.json"))  # refund of curso only
    assert states(h) == {"curso": "refunded", "combo": "active"}
    # What the bundle grants stays: the course role, tag and class.
    assert {
        ("discord_role", "1180000000000000001"),
        ("manychat_tag", "aluno-curso"),
        ("class", "curso-2026"),
    } <= grants(h)
    removes = [s for s, _ in h.discord.calls if s.action == "remove_role"]
    assert removes == []  # nothing to send: the only role is still granted by the bundle
    with h.runtime.sessions() as session:
        step = session.scalars(select(ActionRun).where(ActionRun.action == "remove_role")).one()
        assert "still granted by another product" in step.detail


def test_a_role_given_by_hand_is_never_removed(make_harness):
    h = make_harness()
    h.deliver(load_payload("purchase_approved.json"))
    link(h)
    # The rules ask to remove the course role and a hand-given VIP role: only ours goes.
    with h.runtime.sessions.begin() as session:
        student = session.scalars(select(Student)).one()
        membership = session.scalars(select(Membership)).one()
        vip = "1180000000000000999"
        stored = store_internal(
            session, "ACCESS_ENDS", email=student.email, student_id=student.id, product_key="curso", source="admin"
        )
        session.add(
            ActionRun(
                event_id=stored.event_id,
                membership_id=membership.id,
                step_index=0,
                action="remove_role",
                params={"role_ids": ["1180000000000000001", vip]},
            )
        )
        session.get(Event, stored.event_id).status = "processing"
    h.queued.append(stored.event_id)
    h.run_queue()
    sent = [s.params["role_ids"] for s, _ in h.discord.calls if s.action == "remove_role"]
    assert sent == [["1180000000000000001"]]


def test_flags_off_records_skipped_never_done(make_harness):
    from engine.pipeline.runtime import DisabledConnector

    disabled = DisabledConnector("discord", frozenset({"add_role", "remove_role"}), "DISCORD_ENABLED")
    h = make_harness(connectors={"add_role": disabled, "remove_role": disabled})
    h.deliver(load_payload("purchase_approved.json"))
    event_id = link(h)
    role_step = next(r for r in event(h, event_id).action_runs if r.action == "add_role")
    assert (role_step.status, role_step.detail) == ("skipped", "DISCORD_ENABLED is off")
    assert ("discord_role", "1180000000000000001") not in grants(h)


def test_unknown_member_keeps_roles_desired_and_rejoin_applies_them(make_harness):
    h = make_harness()
    h.deliver(load_payload("purchase_approved.json"))
    h.discord.results["add_role"] = [
        StepResult(
            StepStatus.SKIPPED, error="discord.unknown_member", detail="not in the server", data={"pending_join": True}
        )
    ]
    link(h)
    with h.runtime.sessions() as session:
        grant = session.scalars(select(Grant).where(Grant.kind == "discord_role")).one()
        assert grant.applied is False
        student = session.scalars(select(Student)).one()
    with h.runtime.sessions.begin() as session:
        stored = store_internal(session, "MEMBER_JOINED", email=student.email, student_id=student.id, source="bot")
    h.queued.append(stored.event_id)
    h.run_queue()
    with h.runtime.sessions() as session:
        assert session.scalars(select(Grant).where(Grant.kind == "discord_role")).one().applied is True
    assert [s.action for s, _ in h.discord.calls] == ["add_role", "add_role"]


def test_first_purchase_sets_the_issued_code_before_the_flow(make_harness):
    h = make_harness()
    h.deliver(load_payload("purchase_approved.json"))
    assert h.manychat.actions_called() == ["add_tag", "set_field", "trigger_flow"]
    set_field = next(s for s, _ in h.manychat.calls if s.action == "set_field")
    with h.runtime.sessions() as session:
        from engine.db.models import OnboardingToken

        token = session.scalars(select(OnboardingToken)).one()
    assert set_field.params["value"] == token.code and len(token.code) == 8


def test_refund_arriving_before_its_approval_still_wins(make_harness):
    """In creation order the purchase was approved, then refunded: the membership ends refunded,
    and the approval, known to be refunded already, never grants: no code, no onboarding flow."""
    h = make_harness()
    refund_id = h.deliver(load_payload("purchase_refunded.json"))  # nothing granted yet: ignored
    assert event(h, refund_id).status == "ignored"
    approval_id = h.deliver(load_payload("purchase_approved.json"))
    found = event(h, approval_id)
    assert found.status == "processed"
    assert [p["to_state"] for p in found.plans] == ["refunded"]
    assert states(h) == {"curso": "refunded"} and grants(h) == set()
    with h.runtime.sessions() as session:
        from engine.db.models import OnboardingToken

        assert session.scalars(select(OnboardingToken)).all() == []
    assert [(s.action, s.params.get("flow")) for s, _ in h.manychat.calls] == [("trigger_flow", "refund")]
    assert h.discord.calls == []


def test_a_new_purchase_of_the_same_product_is_not_blocked_by_an_old_refund(make_harness):
    h = make_harness()
    refund = load_payload("purchase_refunded.json")
    h.deliver(refund)
    again = load_payload("purchase_approved.json")
    again["id"], again["data"]["purchase"]["transaction"] = "another-purchase", "HP1000000000099"
    again["creation_date"] = refund["creation_date"] + 1000  # bought again after that refund
    h.deliver(again)
    assert states(h) == {"curso": "pending_onboarding"}


def test_a_database_error_in_a_local_step_fails_that_step_and_keeps_its_record(make_harness, monkeypatch):
    from sqlalchemy import text

    from engine.pipeline import local_actions

    def broken_schedule(rt, session, run, membership, student):
        session.execute(text("SELECT * FROM no_such_table"))

    monkeypatch.setitem(local_actions.LOCAL_ACTIONS, "schedule", broken_schedule)
    h = make_harness()
    found = event(h, h.deliver(load_payload("purchase_approved.json")))
    step = next(r for r in found.action_runs if r.action == "schedule")
    assert (step.status, step.error) == ("retrying", "engine.error")
    assert "no_such_table" in step.detail
    assert [r.status for r in found.action_runs[:4]] == ["done"] * 4  # earlier steps kept


def test_a_code_colliding_with_another_students_code_is_not_reported_as_issued(make_harness, monkeypatch):
    import engine.pipeline.facts as facts
    from engine.db.models import OnboardingToken

    h = make_harness()
    h.deliver(load_payload("purchase_approved.json"))
    with h.runtime.sessions() as session:
        taken = session.scalars(select(OnboardingToken)).one().code
    monkeypatch.setattr(facts, "new_code", lambda length=8: taken)
    other = load_payload("purchase_approved.json")
    other["id"], other["data"]["buyer"]["email"] = "another-student", "bia@example.com"
    other["data"]["purchase"]["transaction"] = "HP1000000000055"
    found = event(h, h.deliver(other))
    step = found.action_runs[0]
    assert (step.action, step.status, step.error) == ("issue_token", "failed", "engine.code_collision")
    assert found.status == "failed"
    assert h.manychat.actions_called().count("set_field") == 1  # the colliding code was never sent


def test_each_decided_event_is_one_info_line_saying_what_it_did(make_harness, caplog):
    caplog.set_level("INFO", logger="engine.pipeline")
    h = make_harness()
    approved = h.deliver(load_payload("purchase_approved.json"))
    cart = h.deliver(load_payload("purchase_out_of_shopping_cart.json"))
    found, ignored = event(h, approved), event(h, cart)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("engine.pipeline.") and r.levelname == "INFO"]
    mine = [line for line in lines if line.startswith(f"event {approved} ")]
    assert len(mine) == 1, lines
    entry = found.plans[0]
    assert f"PURCHASE_APPROVED from hotmart: student {found.student_id}, " in mine[0]
    assert f"{entry['product']} {entry['from_state']} → {entry['to_state']}" in mine[0]
    assert f", {len(found.action_runs)} steps (rules {found.rules_version})" in mine[0]
    theirs = [line for line in lines if line.startswith(f"event {cart} ")]
    said = f"ignored: {ignored.reason} (rules {ignored.rules_version})"
    assert theirs == [f"event {cart} PURCHASE_OUT_OF_SHOPPING_CART from hotmart: {said}"]
