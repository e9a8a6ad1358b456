"""`engine dry-run --event ID`: a stored event planned again on the student's real data."""

from __future__ import annotations

import copy
import json
import shutil

from sqlalchemy import func, select

from engine.db.models import ActionRun, Event, Membership
from engine.rules import load_rules
from engine.service.replan import replan_event
from tests.conftest import RULES, load_payload
from tests.pipeline.test_processing import link, states

NOW = "2026-03-05T12:00:00+00:00"
PAYMENT_LATE_NS = load_rules(RULES).products["comunidade"].flows["payment_late"]


def overdue(h) -> int:
    """Ana subscribes, links, a renewal fails; the PURCHASE_DELAYED event id."""
    h.deliver(load_payload("purchase_approved_subscription_first.json"))
    link(h)
    return h.deliver(load_payload("purchase_delayed.json"))


def counts(h) -> tuple[int, int]:
    with h.runtime.sessions() as session:
        return session.scalar(select(func.count()).select_from(ActionRun)), session.scalar(
            select(func.count()).select_from(Event)
        )


def test_a_processed_event_against_todays_state(make_harness, engine_cli):
    h = make_harness()
    delayed = overdue(h)
    before = counts(h)
    result = engine_cli(h.runtime.settings.database_url, "dry-run", "--event", str(delayed), "--now", NOW)
    assert result.returncode == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"event       #{delayed} PURCHASE_DELAYED  (hotmart), received ")
    version = h.runtime.rules.version
    assert lines[1:] == [
        "at the time processed",
        f"rules       then {version}, now {version}",
        "student     ana.exemplo@example.com  (Discord linked)",
        "product     comunidade",
        lines[5],  # membership #N, since <time>
        "timer       GRACE_EXPIRED due 2026-03-09 12:00:00",
        "state       overdue (unchanged)",
        "ignored     no active subscription to put in grace",
        "differences from what was decided at the time",
        "  comunidade: state then active, now overdue",
        "  comunidade: then payment_late -> overdue; now ignored (no active subscription to put in grace)",
        f'  comunidade: - trigger_flow {{"flow": "payment_late", "flow_ns": "{PAYMENT_LATE_NS}"}}',
        '  comunidade: - schedule {"event": "GRACE_EXPIRED"}',
    ]
    assert lines[5].startswith("membership  #")
    # Nothing ran, nothing was stored, nothing changed.
    assert counts(h) == before
    assert states(h) == {"comunidade": "overdue"}


def test_json_holds_the_plans_then_and_now(make_harness, engine_cli):
    h = make_harness()
    delayed = overdue(h)
    result = engine_cli(h.runtime.settings.database_url, "dry-run", "--event", str(delayed), "--now", NOW, "--json")
    assert result.returncode == 0, result.output
    out = json.loads(result.stdout)
    assert out["event"]["id"] == delayed and out["event"]["status"] == "processed"
    assert out["event"]["rules_version"] == out["rules_version"] == h.runtime.rules.version
    assert out["student"] == {"email": "ana.exemplo@example.com", "discord_linked": True}
    [now] = out["plans"]
    assert (now["product"], now["from_state"], now["transition"]) == ("comunidade", "overdue", None)
    assert now["pending_timers"] == [{"event": "GRACE_EXPIRED", "due_at": "2026-03-09T12:00:00+00:00"}]
    [then] = out["then"]
    assert (then["from_state"], then["to_state"], then["transition"]) == ("active", "overdue", "payment_late")
    assert len(out["differences"]) == 4


def test_same_decision_and_codes_never_shown(make_harness, engine_cli):
    h = make_harness()
    approval = h.deliver(load_payload("purchase_approved.json"))
    with h.runtime.sessions() as session:
        [code] = [r.params["code"] for r in session.scalars(select(ActionRun)) if r.action == "issue_token"]
    # Planned again from the same state (nothing happened since): the same decision.
    with h.runtime.sessions.begin() as session:
        session.scalars(select(Membership)).one().state = "new"
    database = h.runtime.settings.database_url
    result = engine_cli(database, "dry-run", "--event", str(approval), "--now", NOW)
    assert result.returncode == 0, result.output
    assert result.stdout.splitlines()[-1] == "same decision as at the time"
    as_json = engine_cli(database, "dry-run", "--event", str(approval), "--json")
    assert code not in result.stdout and code not in as_json.stdout
    then_steps = json.loads(as_json.stdout)["then"][0]["steps"]
    assert then_steps[0]["params"]["code"] == "{token}"
    assert {"field": "codigo_discord", "value": "{token}"}.items() <= then_steps[2]["params"].items()


def test_an_event_the_rules_did_not_know_against_new_rules(make_harness, engine_cli, tmp_path):
    """A product on sale before its file was merged: what the merged rules would do with it."""
    h = make_harness()
    body = copy.deepcopy(load_payload("purchase_approved.json"))
    body["data"]["product"]["id"] = 9999999
    unknown = h.deliver(body)
    rules_dir = tmp_path / "rules"
    shutil.copytree(RULES, rules_dir)
    curso = (rules_dir / "products" / "curso.yaml").read_text(encoding="utf-8")
    (rules_dir / "products" / "curso.yaml").write_text(curso.replace("1111111", "9999999"), encoding="utf-8")
    result = engine_cli(
        h.runtime.settings.database_url, "dry-run", "--event", str(unknown), "--rules", str(rules_dir), "--now", NOW
    )
    assert result.returncode == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[1] == "at the time needs_attention: no product matches id 9999999"
    assert "membership  none yet (would be created)" in lines
    assert "transition  purchase_not_linked: new -> pending_onboarding" in lines
    assert lines[-2:] == [
        "differences from what was decided at the time",
        "  curso: no plan at the time (needs_attention: no product matches id 9999999); now purchase_not_linked -> "
        "pending_onboarding",
    ]


def test_notes_say_what_the_worker_would_do_differently(make_harness):
    h = make_harness()
    approval = h.deliver(load_payload("purchase_approved.json"))
    link(h)
    h.deliver(load_payload("purchase_refunded.json"))
    assert states(h) == {"curso": "refunded"}
    from datetime import UTC, datetime

    with h.runtime.sessions() as session:
        replan = replan_event(session, approval, h.runtime.rules.rules, now=datetime(2026, 3, 5, tzinfo=UTC))
    # The refund was created after the approval: the worker folds the approval into the ordered
    # history (where the refund still wins), it does not apply it on top.
    assert replan.notes == [
        "curso: created 2025-03-03T13:00:09+00:00, before the last applied event (2025-03-07T03:18:55+00:00): "
        "the worker re-evaluates it against the ordered history"
    ]
    assert replan.targets[0].plan.from_state == "refunded"


def test_cli_refuses_ambiguous_or_missing_input(make_harness, engine_cli):
    h = make_harness()
    database = h.runtime.settings.database_url
    missing = engine_cli(database, "dry-run", "--event", "424242")
    assert (missing.returncode, missing.stderr) == (2, "error: event 424242 not found\n")
    both = engine_cli(database, "dry-run", "x.json", "--event", "1")
    assert both.returncode == 2 and "give an EVENT_FILE or --event ID" in both.stderr
    neither = engine_cli(database, "dry-run")
    assert neither.returncode == 2 and "give an EVENT_FILE or --event ID" in neither.stderr
    with_state = engine_cli(database, "dry-run", "--event", "1", "--state", "active")
    assert with_state.returncode == 2 and "real state" in with_state.stderr


def test_a_student_wide_event_is_planned_for_each_membership(make_harness):
    from datetime import UTC, datetime

    h = make_harness()
    h.deliver(load_payload("purchase_approved.json"))
    h.deliver(load_payload("purchase_approved_subscription_first.json"))
    linked = link(h)
    assert states(h) == {"curso": "active", "comunidade": "active"}
    with h.runtime.sessions() as session:
        replan = replan_event(session, linked, h.runtime.rules.rules, now=datetime(2026, 3, 5, tzinfo=UTC))
    assert [(t.plan.product, t.plan.from_state, t.plan.ignored_reason is not None) for t in replan.targets] == [
        ("curso", "active", True),
        ("comunidade", "active", True),
    ]
    assert sorted(d for d in replan.differences if "state then" in d) == [
        "comunidade: state then pending_onboarding, now active",
        "curso: state then pending_onboarding, now active",
    ]
