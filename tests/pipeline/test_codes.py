"""One /registrar code per student, shared by every product waiting for the Discord link.

``revoke_token`` (a refund or chargeback ended one membership) revokes the student's open code
only when no other membership of the student still waits for it; a code the ended membership
was issued is handed over to the one that waits. Run through the real pipeline on PostgreSQL
(``make_harness``), linking through the bot's ``LinkService``.
"""

from __future__ import annotations

import copy
import json

from sqlalchemy import select

from engine.db.models import ActionRun, Membership, OnboardingToken, ScheduledEvent
from engine.onboarding.linking import LinkService
from engine.pipeline.intake import store_webhook
from engine.pipeline.sweep import fire_due_timers
from engine.service.code_request import request_code
from engine.sources.hotmart import SOURCE as HOTMART
from tests.conftest import load_payload

EMAIL = "ana.exemplo@example.com"
ANA_DISCORD = "80351110224678912"
COURSE_ROLE = "1180000000000000001"  # curso (C)
COMMUNITY_ROLE = "1180000000000000002"  # comunidade (S)
COURSE, COMMUNITY = 1111111, 2222222
C_TRANSACTION, S_TRANSACTION = "HP10000000000001", "HP20000000000001"
_BASE = load_payload("purchase_approved.json")["creation_date"]  # C's approval, 2025-03-03


def hotmart(name: str, product_id: int, transaction: str, minute: int, **data: object) -> dict:
    """A reference payload for ``product_id``, created ``minute`` minutes after C's approval."""
    payload = copy.deepcopy(load_payload(f"{name}.json"))
    payload["id"] = f"{payload['id']}-{product_id}-{minute}"
    payload["creation_date"] = _BASE + minute * 60_000
    payload["data"]["product"]["id"] = product_id
    payload["data"].setdefault("purchase", {})["transaction"] = transaction
    payload["data"].update(data)
    return payload


def approve_course(h, minute: int = 0) -> int:
    return h.deliver(hotmart("purchase_approved", COURSE, C_TRANSACTION, minute))


def approve_community(h, minute: int = 1) -> int:
    return h.deliver(hotmart("purchase_approved_subscription_first", COMMUNITY, S_TRANSACTION, minute))


def refund_course(h, minute: int = 2) -> int:
    return h.deliver(hotmart("purchase_refunded", COURSE, C_TRANSACTION, minute))


def refund_community(h, minute: int = 3) -> int:
    return h.deliver(hotmart("purchase_refunded", COMMUNITY, S_TRANSACTION, minute))


def states(h) -> dict[str, str]:
    with h.runtime.sessions() as session:
        return {m.product_key: m.state for m in session.scalars(select(Membership))}


def tokens(h) -> list[tuple[str, str | None, str | None, bool]]:
    """(code, product it belongs to, revoked reason, used) of every code, oldest first."""
    with h.runtime.sessions() as session:
        rows = session.execute(
            select(OnboardingToken, Membership.product_key)
            .outerjoin(Membership, OnboardingToken.membership_id == Membership.id)
            .order_by(OnboardingToken.id)
        ).all()
        return [(t.code, product, t.revoked_reason, t.used_at is not None) for t, product in rows]


def open_codes(h) -> list[tuple[str, str | None]]:
    return [(code, product) for code, product, reason, used in tokens(h) if reason is None and not used]


def revoke_detail(h, event_id: int) -> str:
    with h.runtime.sessions() as session:
        run = session.scalars(
            select(ActionRun).where(ActionRun.event_id == event_id, ActionRun.action == "revoke_token")
        ).one()
        assert run.status == "done", (run.status, run.error, run.detail)
        return run.detail


def timers(h, product: str) -> list[tuple[str, str]]:
    with h.runtime.sessions() as session:
        rows = session.execute(
            select(ScheduledEvent.event_type, ScheduledEvent.status)
            .join(Membership, ScheduledEvent.membership_id == Membership.id)
            .where(Membership.product_key == product)
            .order_by(ScheduledEvent.id)
        )
        return [tuple(row) for row in rows]


def register(h, code: str, user: str = ANA_DISCORD):
    """``/registrar codigo:<code>``; the worker runs what the bot queued."""
    outcome = LinkService(h.runtime.sessions, h.runtime.rules, h.queued.append, clock=h.clock).link(user, code)
    h.run_queue()
    return outcome


def discord_calls(h) -> list[tuple[str, list[str]]]:
    return [(step.action, step.params["role_ids"]) for step, _ in h.discord.calls]


def manychat_calls(h, action: str) -> list:
    return [step.params for step, _ in h.manychat.calls if step.action == action]


# -- the issue: refunded on one product before linking, the other still needs the code ----------------


def test_course_then_subscription_then_refund_of_the_course_keeps_the_subscriptions_code(make_harness):
    h = make_harness()
    approve_course(h)
    approve_community(h)
    [(course_code, *_), (community_code, *_)] = tokens(h)
    assert tokens(h) == [(course_code, "curso", "replaced", False), (community_code, "comunidade", None, False)]
    assert manychat_calls(h, "set_field")[-1]["value"] == community_code  # what Ana reads on WhatsApp

    refund_id = refund_course(h)

    assert states(h) == {"curso": "refunded", "comunidade": "pending_onboarding"}
    assert revoke_detail(h, refund_id) == "code kept: still needed by comunidade"
    assert open_codes(h) == [(community_code, "comunidade")]
    # The course's own replaced code stops counting as waiting: its access ended.
    assert tokens(h)[0] == (course_code, "curso", "access_ended", False)
    # Timers are per membership: the refund cancelled the course's, not the subscription's.
    assert timers(h, "curso") == [("ONBOARDING_REMINDER", "cancelled"), ("TOKEN_EXPIRED", "cancelled")]
    assert timers(h, "comunidade") == [("ONBOARDING_REMINDER", "pending"), ("TOKEN_EXPIRED", "pending")]
    # Tags follow the union rule too: only the course's tag went.
    assert manychat_calls(h, "remove_tag") == [{"tags": ["aluno-curso"]}]

    outcome = register(h, community_code)
    assert outcome.outcome == "linked"
    assert states(h) == {"curso": "refunded", "comunidade": "active"}
    assert discord_calls(h) == [("add_role", [COMMUNITY_ROLE])]
    assert timers(h, "comunidade") == [("ONBOARDING_REMINDER", "cancelled"), ("TOKEN_EXPIRED", "cancelled")]


def test_subscription_then_course_then_refund_of_the_course_hands_the_code_over(make_harness):
    h = make_harness()
    approve_community(h, minute=0)
    approve_course(h, minute=1)
    [(community_code, *_), (course_code, *_)] = tokens(h)
    assert tokens(h) == [(community_code, "comunidade", "replaced", False), (course_code, "curso", None, False)]
    assert manychat_calls(h, "set_field")[-1]["value"] == course_code

    refund_id = refund_course(h)

    assert revoke_detail(h, refund_id) == "code kept: handed over to comunidade, which still waits for the Discord link"
    assert open_codes(h) == [(course_code, "comunidade")]
    assert timers(h, "comunidade") == [("ONBOARDING_REMINDER", "pending"), ("TOKEN_EXPIRED", "pending")]
    assert timers(h, "curso") == [("ONBOARDING_REMINDER", "cancelled"), ("TOKEN_EXPIRED", "cancelled")]

    assert register(h, course_code).outcome == "linked"
    assert states(h) == {"comunidade": "active", "curso": "refunded"}
    assert discord_calls(h) == [("add_role", [COMMUNITY_ROLE])]


def test_the_kept_code_keeps_its_reminder_and_expiry_timers(make_harness):
    """The subscription's own timers still run after the course's refund: the reminder after 24 h,
    then, with no link in 7 days, a fresh code for the subscription."""
    h = make_harness()
    approve_course(h)
    approve_community(h)
    refund_course(h)
    [(kept, owner)] = open_codes(h)
    assert owner == "comunidade"

    h.clock.advance(hours=24, seconds=1)
    assert len(fire_due_timers(h.runtime)) == 1
    h.run_queue()
    assert manychat_calls(h, "trigger_flow")[-1]["flow"] == "onboarding_reminder"
    assert open_codes(h) == [(kept, "comunidade")]

    h.clock.advance(days=6)
    assert len(fire_due_timers(h.runtime)) == 1  # TOKEN_EXPIRED of the subscription
    h.run_queue()
    [(fresh, owner)] = open_codes(h)
    assert owner == "comunidade" and fresh != kept and manychat_calls(h, "set_field")[-1]["value"] == fresh
    assert timers(h, "curso") == [("ONBOARDING_REMINDER", "cancelled"), ("TOKEN_EXPIRED", "cancelled")]
    assert register(h, fresh).outcome == "linked"
    assert states(h) == {"curso": "refunded", "comunidade": "active"}


def test_both_refunded_revokes_the_code(make_harness):
    h = make_harness()
    approve_course(h)
    approve_community(h)
    refund_course(h)
    [(code, owner)] = open_codes(h)
    assert owner == "comunidade"

    refund_id = refund_community(h)

    assert states(h) == {"curso": "refunded", "comunidade": "refunded"}
    assert revoke_detail(h, refund_id) == "1 open code revoked: no other product of the student waits for it"
    assert open_codes(h) == []
    assert [reason for _, _, reason, _ in tokens(h)] == ["access_ended", "access_ended"]
    outcome = register(h, code)
    assert (outcome.outcome, outcome.event_id) == ("access_ended_code", None)
    assert h.discord.calls == []


def test_both_refunded_in_the_other_order_revokes_the_handed_over_code(make_harness):
    h = make_harness()
    approve_community(h, minute=0)
    approve_course(h, minute=1)
    refund_course(h)
    [(code, owner)] = open_codes(h)
    assert owner == "comunidade"

    refund_community(h)

    assert open_codes(h) == []
    assert register(h, code).outcome == "access_ended_code"


def test_refund_of_the_subscription_first_then_the_course(make_harness):
    """The waiting product is the course this time: the subscription's refund keeps the course's
    code; the course's refund later revokes it."""
    h = make_harness()
    approve_course(h)
    approve_community(h)
    [(course_code, *_), (code, *_)] = tokens(h)
    assert tokens(h) == [(course_code, "curso", "replaced", False), (code, "comunidade", None, False)]

    first = refund_community(h, minute=2)
    assert revoke_detail(h, first) == "code kept: handed over to curso, which still waits for the Discord link"
    assert open_codes(h) == [(code, "curso")]

    second = refund_course(h, minute=3)
    assert revoke_detail(h, second) == "1 open code revoked: no other product of the student waits for it"
    assert open_codes(h) == []


# -- what did not change --------------------------------------------------------------------------


def test_a_student_with_one_product_loses_the_code_on_refund(make_harness):
    h = make_harness()
    approve_course(h)
    [(code, owner)] = open_codes(h)
    assert owner == "curso"

    refund_id = refund_course(h)

    assert revoke_detail(h, refund_id) == "1 open code revoked: no other product of the student waits for it"
    assert tokens(h) == [(code, "curso", "access_ended", False)]
    assert register(h, code).outcome == "access_ended_code"


def test_refund_after_linking_revokes_an_admins_code_as_before(make_harness):
    """Ana linked already (the link reached both products): nothing waits, so a code the admin
    sent for the course goes with the course's refund."""
    h = make_harness()
    approve_course(h)
    approve_community(h)
    [(code, owner)] = open_codes(h)
    assert owner == "comunidade"
    assert register(h, code).outcome == "linked"
    assert states(h) == {"curso": "active", "comunidade": "active"}
    request_code(h.runtime, EMAIL, "curso")
    h.run_queue()
    [(admin_code, owner)] = open_codes(h)
    assert owner == "curso"

    refund_id = refund_course(h)

    assert revoke_detail(h, refund_id) == "1 open code revoked: no other product of the student waits for it"
    assert open_codes(h) == []
    assert register(h, admin_code).outcome == "access_ended_code"
    assert states(h) == {"curso": "refunded", "comunidade": "active"}


def test_refund_after_linking_keeps_another_products_relink_code(make_harness):
    """After the link, an admin sent a code for the subscription (to link another account): it
    waits for its link, so the course's refund keeps it."""
    h = make_harness()
    approve_course(h)
    approve_community(h)
    register(h, open_codes(h)[0][0])
    request_code(h.runtime, EMAIL, "comunidade")
    h.run_queue()
    [(relink_code, owner)] = open_codes(h)
    assert owner == "comunidade"

    refund_id = refund_course(h)

    assert revoke_detail(h, refund_id) == "code kept: still needed by comunidade"
    assert open_codes(h) == [(relink_code, "comunidade")]


def test_a_product_that_ended_without_revoking_waits_for_nothing(make_harness):
    """The subscription was cancelled after its paid period while onboarding (churned: its rules
    revoke no code). A Discord link would move it nowhere, so the course's refund revokes the
    code the subscription left open."""
    h = make_harness()
    approve_course(h)
    approve_community(h)
    h.deliver(hotmart("subscription_cancellation", COMMUNITY, S_TRANSACTION, 2))
    assert states(h) == {"curso": "pending_onboarding", "comunidade": "churned"}
    [(code, owner)] = open_codes(h)
    assert owner == "comunidade"

    refund_id = refund_course(h, minute=3)

    assert revoke_detail(h, refund_id) == "1 open code revoked: no other product of the student waits for it"
    assert open_codes(h) == []
    assert register(h, code).outcome == "access_ended_code"


# -- the ordering paths: a batch, a late event -----------------------------------------------------


def store(h, payload: dict) -> int:
    with h.runtime.sessions.begin() as session:
        stored = store_webhook(HOTMART, session, json.dumps(payload).encode(), {}, held=False)
    return stored.event_id


def test_an_approval_and_its_refund_planned_together_keep_the_other_products_code(make_harness):
    """The course's approval and refund settle together: the approval's code is superseded (never
    issued) and the refund keeps the subscription's code."""
    h = make_harness()
    approve_community(h, minute=0)
    [(code, owner)] = open_codes(h)
    assert owner == "comunidade"
    approval_id = store(h, hotmart("purchase_approved", COURSE, C_TRANSACTION, 1))
    refund_id = store(h, hotmart("purchase_refunded", COURSE, C_TRANSACTION, 2))
    h.queued.extend([approval_id, refund_id])
    h.run_queue()

    with h.runtime.sessions() as session:
        issued = session.scalars(
            select(ActionRun).where(ActionRun.event_id == approval_id, ActionRun.action == "issue_token")
        ).one()
    assert (issued.status, issued.error) == ("skipped", "superseded")
    assert revoke_detail(h, refund_id) == "code kept: still needed by comunidade"
    assert open_codes(h) == [(code, "comunidade")]
    assert register(h, code).outcome == "linked"
    assert states(h) == {"comunidade": "active", "curso": "refunded"}


def test_a_refund_folded_in_late_keeps_the_other_products_code(make_harness):
    """The course's refund came first (ignored: nothing to refund yet); its approval arrives later
    and is folded in creation order: the refund's revoke_token runs then, and keeps the
    subscription's code."""
    h = make_harness()
    approve_community(h, minute=0)
    [(code, _)] = open_codes(h)
    refund_course(h, minute=2)
    assert states(h) == {"comunidade": "pending_onboarding"}

    approval_id = approve_course(h, minute=1)

    assert states(h) == {"comunidade": "pending_onboarding", "curso": "refunded"}
    assert revoke_detail(h, approval_id) == "code kept: still needed by comunidade"
    assert open_codes(h) == [(code, "comunidade")]
    assert register(h, code).outcome == "linked"
    assert states(h) == {"comunidade": "active", "curso": "refunded"}
