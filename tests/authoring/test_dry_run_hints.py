"""dry-run helps: the states an event applies from, "all pending timers", skipped steps."""

from __future__ import annotations

import json
from pathlib import Path

from engine.rules.files import rules_version
from tests.authoring.test_dry_run import ANA, REFERENCE, dry_run, dry_run_json, write_json
from tests.conftest import RULES
from tests.engine.test_optional_flows import curso_declines_billet_reminder


def test_no_transition_from_the_state_lists_where_it_applies_and_suggests_state() -> None:
    result = dry_run(str(REFERENCE / "purchase_refunded.json"))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "event       PURCHASE_REFUNDED  (hotmart)",
        f"student     {ANA}",
        "product     curso",
        "state       new (unchanged)",
        "ignored     no transition for PURCHASE_REFUNDED from 'new' (product curso)",
        "hint        PURCHASE_REFUNDED applies from pending_onboarding, active, overdue, cancelled, disputed: "
        "try --state pending_onboarding",
        f"rules       {rules_version(RULES)}",
    ]


def test_json_names_the_states_it_applies_from() -> None:
    out = dry_run_json(str(REFERENCE / "purchase_refunded.json"))
    assert out["applies_from"] == ["pending_onboarding", "active", "overdue", "cancelled", "disputed"]
    applied = dry_run_json(str(REFERENCE / "purchase_refunded.json"), "--state", "active")
    assert applied["applies_from"] == []


def test_the_hint_counts_only_transitions_of_the_products_kind(tmp_path: Path) -> None:
    out = dry_run_json(str(REFERENCE / "purchase_delayed.json"), "--state", "overdue")
    assert (out["product"], out["applies_from"]) == ("comunidade", ["active"])
    # PURCHASE_DELAYED only has a transition for subscriptions: none for the one-time curso
    body = json.loads((REFERENCE / "purchase_delayed.json").read_text(encoding="utf-8"))
    body["data"]["product"]["id"] = 1111111
    result = dry_run(str(write_json(tmp_path, body)), "--state", "active")
    assert "product     curso" in result.stdout.splitlines()
    assert not any(line.startswith("hint") for line in result.stdout.splitlines())


def test_bare_cancel_timers_reads_all_pending_timers() -> None:
    result = dry_run(str(REFERENCE / "purchase_refunded.json"), "--state", "active")
    assert "  1. cancel_timers  all pending timers" in result.stdout.splitlines()
    listed = dry_run(str(REFERENCE / "purchase_approved.json"), "--state", "active")
    assert "  1. cancel_timers  events=['GRACE_EXPIRED', 'ACCESS_ENDS']" in listed.stdout.splitlines()


def test_a_skipped_step_shows_why(tmp_path: Path) -> None:
    rules_dir = curso_declines_billet_reminder(tmp_path)
    result = dry_run(str(REFERENCE / "purchase_billet_printed.json"), rules=rules_dir)
    assert result.stdout.splitlines()[-2] == (  # the last line names the rules version
        "  1. trigger_flow   flow='billet_reminder'  (skipped: product curso sends no 'billet_reminder' flow "
        "(flows: billet_reminder: none))"
    )
