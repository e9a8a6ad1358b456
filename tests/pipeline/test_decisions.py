"""Decided once, in one place: a new student is planned once; lifecycle policy is declared, not
hidden (student-wide events in the rules, a platform's granting/revoking/paid-until events on its source)."""

from __future__ import annotations

import shutil

from engine.rules import check_rules
from engine.sources import SOURCES
from tests.conftest import RULES, load_payload
from tests.pipeline.test_processing import event, link, states, with_product

SHIPPED = "  student_events: [DISCORD_LINKED, MEMBER_JOINED]\n"
CURSO = 1111111  # the shipped course's Hotmart id


def rules_with(tmp_path, student_events: str):
    rules_dir = tmp_path / "rules"
    shutil.copytree(RULES, rules_dir)
    lifecycle = rules_dir / "lifecycle.yaml"
    text = lifecycle.read_text()
    assert SHIPPED in text
    lifecycle.write_text(text.replace(SHIPPED, student_events))
    return rules_dir


def test_a_student_event_must_be_declared_under_events(tmp_path):
    rules_dir = rules_with(tmp_path, "  student_events: [DISCORD_LINKED, MEMBER_JOINED, STUDENT_MOVED]\n")
    line = (
        rules_dir.joinpath("lifecycle.yaml")
        .read_text()
        .splitlines()
        .index("  student_events: [DISCORD_LINKED, MEMBER_JOINED, STUDENT_MOVED]")
    )
    _, problems = check_rules(rules_dir)
    assert [str(p) for p in problems] == [
        f"rules/lifecycle.yaml:{line + 1}: student_events: STUDENT_MOVED is not declared under lifecycle.events"
    ]


def test_a_student_event_reaches_every_membership(make_harness):
    h = make_harness()
    h.deliver(load_payload("purchase_approved.json"))
    h.deliver(with_product(load_payload("purchase_approved.json"), 2222222, "HP2000000000001"))
    found = event(h, link(h))
    assert sorted(plan["product"] for plan in found.plans) == ["comunidade", "curso"]
    assert states(h) == {"curso": "active", "comunidade": "active"}


def test_an_internal_event_the_rules_do_not_declare_student_wide_concerns_no_membership(make_harness, tmp_path):
    h = make_harness(rules_dir=rules_with(tmp_path, "  student_events: [MEMBER_JOINED]\n"))
    h.deliver(load_payload("purchase_approved.json"))
    found = event(h, link(h))
    # Not a decision of the rules but a gap in them: an admin is told (needs attention), not silence.
    assert (found.status, found.reason) == ("needs_attention", "product (none) is not defined in the rules")
    assert states(h) == {"curso": "pending_onboarding"}


def test_the_platform_semantics_live_in_the_source():
    hotmart = SOURCES["hotmart"]
    assert hotmart.revoking_events == {"PURCHASE_REFUNDED", "PURCHASE_CHARGEBACK"}
    assert hotmart.granting_events <= hotmart.events and hotmart.paid_until_events <= hotmart.events


def test_a_new_students_first_event_is_planned_once(make_harness, monkeypatch):
    from engine.lifecycle.planner import Planner

    calls = []
    plan = Planner.plan

    def counted(self, *args, **kwargs):
        calls.append(args[0])
        return plan(self, *args, **kwargs)

    monkeypatch.setattr(Planner, "plan", counted)
    h = make_harness()
    found = event(h, h.deliver(load_payload("purchase_approved.json")))
    assert calls == ["PURCHASE_APPROVED"]
    assert found.status == "processed" and states(h) == {"curso": "pending_onboarding"}
    assert [run.action for run in found.action_runs][:2] == ["issue_token", "add_tag"]
    code = found.action_runs[0].params["code"]
    assert len(code) == 8 and found.action_runs[2].params["value"] == code  # the code the plan carried


def test_a_dispute_is_closed_by_its_own_purchases_warranty_only(make_harness):
    """Ana disputes her course purchase. Another purchase's warranty closing (a PURCHASE_COMPLETE of
    another transaction, created later) leaves the dispute open; the disputed purchase's own closes
    it (the shipped rules' ``if: same_transaction``)."""
    h = make_harness()
    approval = load_payload("purchase_approved.json")
    h.deliver(approval)
    link(h)
    disputed = approval["data"]["purchase"]["transaction"]
    h.deliver(with_product(load_payload("purchase_protest.json"), CURSO, disputed))
    assert states(h) == {"curso": "disputed"}

    def completion(transaction: str, created_ms: int) -> dict:
        body = with_product(load_payload("purchase_complete.json"), CURSO, transaction)
        body["creation_date"] = created_ms
        return body

    protest_created = load_payload("purchase_protest.json")["creation_date"]
    other = h.deliver(completion("HP10000000000099", protest_created + 60_000))
    assert states(h) == {"curso": "disputed"}
    assert event(h, other).status == "ignored"
    own = h.deliver(completion(disputed, protest_created + 120_000))
    assert states(h) == {"curso": "active"}
    assert [plan["transition"] for plan in event(h, own).plans] == ["dispute_rejected"]
