"""``engine dry-run`` through click's CliRunner."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from engine.cli import main
from engine.rules.files import rules_version

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "rules"
from tests.conftest import CORPUS, REFERENCE  # noqa: E402

CORPUS_FILES = sorted(CORPUS.glob("*.json"))
pytestmark = pytest.mark.usefixtures("rules_checked_once")

NOW = "2025-05-10T12:00:00+00:00"
ANA = "ana.exemplo@example.com"
R_COURSE = "1180000000000000001"
R_COMMUNITY = "1180000000000000002"
DISCORD_OLD = "300000000000000001"
DISCORD_NEW = "300000000000000002"

# Hotmart product ids of the (anonymised) corpus, claimed by a copy of the rules so that
# the corpus drives real transitions too, not only "no product matches".
CORPUS_ONE_TIME_IDS = [5036092, 5485679]
CORPUS_SUBSCRIPTION_IDS = [1355458, 1458881, 4062912, 4713431]


IGNORED_WHILE_ACTIVE = {
    "PURCHASE_COMPLETE": "warranty period over; no access change",
    "PURCHASE_BILLET_PRINTED": "a boleto/PIX was generated for a student who already has a purchase in progress",
    "PURCHASE_CANCELED": "payment did not go through; access was never granted",
    "PURCHASE_EXPIRED": "payment did not go through; access was never granted",
    "PURCHASE_OUT_OF_SHOPPING_CART": "abandoned checkout (a lead); never grants access",
    "CLUB_FIRST_ACCESS": "engagement event; no access change",
    "CLUB_MODULE_COMPLETED": "engagement event; no access change",
}


def dry_run(*args: str, rules: Path = RULES) -> Result:
    return CliRunner().invoke(main, ["dry-run", *args, "--rules", str(rules), "--now", NOW])


def dry_run_json(*args: str, rules: Path = RULES) -> dict[str, Any]:
    result = dry_run(*args, "--json", rules=rules)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    return json.loads(result.stdout)


def write_json(tmp_path: Path, body: Any, name: str = "event.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(body), encoding="utf-8")
    return path


# --- readable trace ----------------------------------------------------------------------


def test_trace_names_event_product_states_conditions_and_steps() -> None:
    result = dry_run(str(REFERENCE / "purchase_approved.json"), "--linked")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "event       PURCHASE_APPROVED  (hotmart)",
        f"student     {ANA}",
        "product     curso",
        "transition  purchase_already_linked: new -> active",
        "conditions",
        "  [no] purchase_not_linked: unless discord_linked = true",
        "  [ok] purchase_already_linked: if discord_linked = true",
        "steps",
        "  1. add_tag        tags=['aluno-curso']",
        f"  2. add_role       role_ids=['{R_COURSE}']",
        "  3. enroll         classes=['curso-2026']",
        "  4. trigger_flow   flow='welcome', flow_ns='content20261101000000_000003'",
        f"rules       {rules_version(RULES)}",  # the version that decided it
    ]


def test_trace_of_an_ignored_event() -> None:
    result = dry_run(str(REFERENCE / "purchase_complete.json"), "--state", "active")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "event       PURCHASE_COMPLETE  (hotmart)",
        f"student     {ANA}",
        "product     comunidade",
        "state       active (unchanged)",
        "ignored     warranty period over; no access change",
        "hint        PURCHASE_COMPLETE applies from disputed: try --state disputed",
        f"rules       {rules_version(RULES)}",
    ]


def test_trace_of_a_transition_without_steps() -> None:
    result = dry_run(str(REFERENCE / "purchase_expired.json"), "--state", "pending_payment")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "transition  never_paid: pending_payment -> new" in lines
    assert lines[-2:] == ["steps       (none)", f"rules       {rules_version(RULES)}"]


def test_trace_shows_input_problems_as_warnings(tmp_path: Path) -> None:
    body = json.loads((REFERENCE / "purchase_approved.json").read_text(encoding="utf-8"))
    body["data"]["buyer"]["email"] = "not-an-email"
    result = dry_run(str(write_json(tmp_path, body)))
    assert result.exit_code == 0, result.output
    assert "warning     data.buyer.email: not an e-mail address" in result.stdout.splitlines()


# --- --json ------------------------------------------------------------------------------


def test_json_of_a_transition() -> None:
    out = dry_run_json(str(REFERENCE / "purchase_approved.json"))
    assert {"event_type", "product", "from_state", "to_state", "conditions", "steps", "ignored_reason"} <= set(out)
    assert out["event_type"] == "PURCHASE_APPROVED"
    assert out["product"] == "curso"
    assert (out["from_state"], out["to_state"]) == ("new", "pending_onboarding")
    assert out["transition"] == "purchase_not_linked"
    assert out["ignored_reason"] is None
    assert out["email"] == ANA
    assert out["occurred_at"] == "2025-03-03T13:00:09+00:00"
    assert out["input_problems"] == []
    assert out["conditions"] == [
        {
            "transition": "purchase_not_linked",
            "condition": "discord_linked",
            "required": False,
            "value": False,
            "kind": "unless",
            "passed": True,
        }
    ]
    assert out["steps"] == [
        {"action": "issue_token", "params": {"code": "{token}", "expires_at": "2025-05-17T12:00:00+00:00"}},
        {"action": "add_tag", "params": {"tags": ["aluno-curso"]}},
        {"action": "set_field", "params": {"field": "codigo_discord", "value": "{token}"}},
        {"action": "trigger_flow", "params": {"flow": "onboarding", "flow_ns": "content20261101000000_000001"}},
        {"action": "schedule", "params": {"event": "ONBOARDING_REMINDER", "due_at": "2025-05-11T12:00:00+00:00"}},
        {"action": "schedule", "params": {"event": "TOKEN_EXPIRED", "due_at": "2025-05-17T12:00:00+00:00"}},
    ]


def test_json_of_an_ignored_event() -> None:
    out = dry_run_json(str(REFERENCE / "purchase_delayed.json"), "--state", "overdue")
    assert out["transition"] is None
    assert out["to_state"] == "overdue"
    assert out["steps"] == []
    assert out["ignored_reason"] == "no active subscription to put in grace"


def test_json_naive_now_is_utc() -> None:
    result = CliRunner().invoke(
        main,
        ["dry-run", str(REFERENCE / "purchase_delayed.json"), "--rules", str(RULES), "--state", "active"]
        + ["--now", "2025-05-10T12:00:00", "--json"],
    )
    assert result.exit_code == 0, result.output
    schedule = json.loads(result.stdout)["steps"][1]
    assert schedule == {
        "action": "schedule",
        "params": {"event": "GRACE_EXPIRED", "due_at": "2025-05-17T12:00:00+00:00"},
    }


def test_json_internal_relink_moves_roles(tmp_path: Path) -> None:
    body = {"event": "DISCORD_LINKED", "product": "combo", "email": "Ana.Exemplo@Example.com"}
    body["fields"] = {"discord_id": DISCORD_NEW}
    out = dry_run_json(str(write_json(tmp_path, body)), "--state", "active", "--previous-discord-id", DISCORD_OLD)
    assert out["email"] == ANA
    assert out["transition"] == "relinked"
    assert out["to_state"] == "active"
    assert out["steps"] == [
        {"action": "remove_role", "params": {"role_ids": [R_COURSE, R_COMMUNITY], "discord_id": DISCORD_OLD}},
        {"action": "add_role", "params": {"role_ids": [R_COURSE, R_COMMUNITY]}},
    ]


def test_json_body_without_event_type(tmp_path: Path) -> None:
    out = dry_run_json(str(write_json(tmp_path, [1, 2, 3])))
    assert out["ignored_reason"] == "no event type in the body"
    assert out["steps"] == []
    assert out["input_problems"] == ["body: expected a JSON object"]


# --- usage errors ------------------------------------------------------------------------


def test_non_json_file_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "event.json"
    path.write_text("event=PURCHASE_APPROVED", encoding="utf-8")
    result = dry_run(str(path))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: cannot read {path}: ")


def test_missing_file_exits_2(tmp_path: Path) -> None:
    result = dry_run(str(tmp_path / "missing.json"))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: cannot read {tmp_path / 'missing.json'}: ")


def test_unknown_state_exits_2() -> None:
    result = dry_run(str(REFERENCE / "purchase_approved.json"), "--state", "frozen")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (
        "error: unknown state 'frozen' (states: new, pending_payment, pending_onboarding, active, overdue, "
        "cancelled, disputed, churned, refunded)\n"
    )


def test_bad_now_exits_2() -> None:
    result = CliRunner().invoke(main, ["dry-run", str(REFERENCE / "purchase_approved.json"), "--now", "yesterday"])
    assert result.exit_code == 2
    assert result.stderr == "error: --now 'yesterday' is not an ISO date\n"


def test_broken_rules_exit_1(tmp_path: Path) -> None:
    result = dry_run(str(REFERENCE / "purchase_approved.json"), rules=tmp_path / "none")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == f"{tmp_path / 'none'}:1: rules directory not found"


# --- the whole corpus --------------------------------------------------------------------


def test_corpus_is_there() -> None:
    assert len(CORPUS_FILES) == 87


@pytest.mark.parametrize("path", CORPUS_FILES, ids=[p.name for p in CORPUS_FILES])
def test_corpus_file_dry_runs(path: Path) -> None:
    out = dry_run_json(str(path))
    assert out["event_type"] == path.stem.rsplit("-", 1)[0].replace("-", "_").upper()
    assert out["transition"] or out["ignored_reason"]
    assert not (out["transition"] and out["ignored_reason"])


@pytest.fixture(scope="module")
def corpus_rules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped rules, with curso and comunidade also claiming the corpus's product ids."""
    target = tmp_path_factory.mktemp("corpus") / "rules"
    shutil.copytree(RULES, target)
    for file, old, extra in (
        ("curso.yaml", "[1111111]", CORPUS_ONE_TIME_IDS),
        ("comunidade.yaml", "[2222222]", CORPUS_SUBSCRIPTION_IDS),
    ):
        path = target / "products" / file
        text = path.read_text(encoding="utf-8")
        assert text.count(old) == 1
        path.write_text(text.replace(old, f"[{old[1:-1]}, {', '.join(map(str, extra))}]"), encoding="utf-8")
    return target


@pytest.mark.parametrize("path", CORPUS_FILES, ids=[p.name for p in CORPUS_FILES])
def test_corpus_file_drives_the_rules_when_its_product_is_claimed(corpus_rules: Path, path: Path) -> None:
    out = dry_run_json(str(path), "--state", "active", "--linked", rules=corpus_rules)
    assert out["transition"] or out["ignored_reason"]
    if out["product"] is None:
        # the anonymiser replaced data.subscription (where these events keep the product) by a string
        assert out["event_type"] in ("SWITCH_PLAN", "UPDATE_SUBSCRIPTION_CHARGE_DATE")
        assert "data.subscription: expected an object, got a string" in out["input_problems"]
        return
    assert out["product"] in ("curso", "comunidade")
    expected = {
        "PURCHASE_APPROVED": {"renewal_or_repurchase"},
        "PURCHASE_REFUNDED": {"refunded"},
        "PURCHASE_CHARGEBACK": {"chargeback"},
        "PURCHASE_PROTEST": {"dispute_opened"},
        "PURCHASE_DELAYED": {"payment_late"},
        "SUBSCRIPTION_CANCELLATION": {"cancelled_keeps_paid_period", "cancelled_after_paid_period"},
    }.get(out["event_type"], {None})
    assert out["transition"] in expected
    if out["transition"] is None:
        assert out["ignored_reason"] == IGNORED_WHILE_ACTIVE[out["event_type"]]
