"""One student across platforms (issue 23 §4), through the worker with recording connectors: a
Kiwify purchase gets a code, /registrar and the role; an Eduzz refund revokes; the same buyer on
Hotmart and Kiwify is one student with one link and both products' access; a refund on one
platform leaves the other's access."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select

from engine.db.models import Event, Student
from engine.pipeline.intake import store_webhook
from engine.sources import SOURCES
from tests.conftest import RULES
from tests.pipeline.test_codes import (
    ANA_DISCORD,
    COMMUNITY,
    COMMUNITY_ROLE,
    COURSE_ROLE,
    S_TRANSACTION,
    approve_community,
    discord_calls,
    hotmart,
    open_codes,
    register,
    states,
)

DATA = Path(__file__).parent.parent / "data"
BIA_DISCORD = "80351110224678913"


def rules_sold_on_every_platform(tmp_path: Path) -> Path:
    """The shipped rules, with curso and comunidade also sold on Kiwify and Eduzz."""
    rules = tmp_path / "rules"
    shutil.copytree(RULES, rules)
    for name, claims in {
        "curso": '    kiwify: ["a1b2c3"]\n    eduzz: [123456]\n',
        "comunidade": '    kiwify: ["d4e5f6"]\n    eduzz: [654321]\n',
    }.items():
        path = rules / "products" / f"{name}.yaml"
        text = path.read_text()
        hotmart_line = next(line for line in text.splitlines(keepends=True) if line.startswith("    hotmart: ["))
        path.write_text(text.replace(hotmart_line, hotmart_line + claims))
    return rules


@pytest.fixture
def rules_dir(tmp_path) -> Path:
    return rules_sold_on_every_platform(tmp_path)


def deliver(h, source: str, fixture: str, **changes) -> list[int]:
    """Store a platform's fixture as a verified webhook and run the worker; the stored event ids."""
    body = json.loads((DATA / source / f"{fixture}.json").read_text())
    body.update(changes)
    with h.runtime.sessions.begin() as session:
        stored = store_webhook(SOURCES[source], session, json.dumps(body).encode(), {}, held=False)
    assert stored.event_ids, stored
    h.queued.extend(stored.event_ids)
    h.run_queue()
    return list(stored.event_ids)


def event(h, event_id: int) -> Event:
    with h.runtime.sessions() as session:
        return session.get(Event, event_id)


def roles_added(h) -> list[str]:
    return [role for action, roles in discord_calls(h) if action == "add_role" for role in roles]


def roles_removed(h) -> list[str]:
    return [role for action, roles in discord_calls(h) if action == "remove_role" for role in roles]


def test_a_kiwify_purchase_gets_a_code_and_registrar_gives_the_role(make_harness, rules_dir):
    h = make_harness(rules_dir=rules_dir)
    [approved] = deliver(h, "kiwify", "order_approved")
    stored = event(h, approved)
    assert (stored.source, stored.type, stored.status) == ("kiwify", "PURCHASE_APPROVED", "processed")
    assert states(h) == {"curso": "pending_onboarding"}
    [(code, product)] = open_codes(h)
    assert product == "curso"
    assert register(h, code).outcome == "linked"
    assert states(h) == {"curso": "active"}
    assert roles_added(h) == [COURSE_ROLE]


def test_an_eduzz_refund_revokes(make_harness, rules_dir):
    h = make_harness(rules_dir=rules_dir)
    deliver(h, "eduzz", "invoice_paid")
    [(code, _)] = open_codes(h)
    assert register(h, code, user=BIA_DISCORD).outcome == "linked"
    assert roles_added(h) == [COURSE_ROLE]
    [refund] = deliver(h, "eduzz", "invoice_refunded")
    assert event(h, refund).status == "processed"
    assert states(h) == {"curso": "refunded"}
    assert roles_removed(h) == [COURSE_ROLE]


def test_an_eduzz_invoice_of_two_products_is_two_memberships(make_harness, rules_dir):
    h = make_harness(rules_dir=rules_dir)
    assert len(deliver(h, "eduzz", "invoice_paid_two_products")) == 2
    assert set(states(h)) == {"curso", "comunidade"}


def test_an_eduzz_event_without_a_canonical_meaning_is_stored_and_ignored_with_its_reason(make_harness, rules_dir):
    h = make_harness(rules_dir=rules_dir)
    [ignored] = deliver(h, "eduzz", "contract_pix_attempted_up_to_date")
    stored = event(h, ignored)
    assert (stored.status, stored.reason) == ("ignored", "Eduzz contract upToDate: access follows the invoice events")


def test_the_same_buyer_on_hotmart_and_kiwify_is_one_student_with_one_link_and_both_accesses(make_harness, rules_dir):
    h = make_harness(rules_dir=rules_dir)
    approve_community(h)  # Hotmart: the subscription
    deliver(h, "kiwify", "order_approved")  # Kiwify: the course, same e-mail
    with h.runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Student)) == 1
    [(code, _)] = open_codes(h)  # one code for the student, whichever platform sold what
    assert register(h, code).outcome == "linked"
    assert states(h) == {"curso": "active", "comunidade": "active"}
    assert sorted(roles_added(h)) == sorted([COURSE_ROLE, COMMUNITY_ROLE])
    with h.runtime.sessions() as session:
        assert session.scalars(select(Student.discord_id)).one() == ANA_DISCORD


def test_a_refund_on_one_platform_leaves_the_others_access(make_harness, rules_dir):
    h = make_harness(rules_dir=rules_dir)
    approve_community(h)
    deliver(h, "kiwify", "order_approved")
    [(code, _)] = open_codes(h)
    register(h, code)
    deliver(h, "kiwify", "order_refunded")
    assert states(h) == {"curso": "refunded", "comunidade": "active"}
    assert roles_removed(h) == [COURSE_ROLE]
    # Hotmart's refund then touches only the product Hotmart sold.
    h.deliver(hotmart("purchase_refunded", COMMUNITY, S_TRANSACTION, 3))
    assert states(h) == {"curso": "refunded", "comunidade": "refunded"}


def test_a_condition_can_tell_the_platforms_apart(make_harness, rules_dir):
    h = make_harness(rules_dir=rules_dir)
    [approved] = deliver(h, "kiwify", "order_approved")
    with h.runtime.sessions() as session:
        payload_source = session.get(Event, approved).source
    assert payload_source == "kiwify"
    from engine.lifecycle.inputs import event_input

    inp = event_input(event(h, approved).payload, h.runtime.rules.rules, source="kiwify")
    assert (inp.fields["source"], inp.fields["source_event"]) == ("kiwify", "order_approved")
