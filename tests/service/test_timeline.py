"""`engine student EMAIL`: a student's whole timeline, in time order."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlalchemy import select

from engine.db.models import ActionRun, Student
from engine.pipeline.history import record_history
from tests.conftest import load_payload
from tests.pipeline.test_processing import link

ANA = "ana.exemplo@example.com"


def ana_disputes(h) -> dict[str, int]:
    """Ana buys the course and links; then she opens a dispute (an alert) and an admin replays."""
    h.runtime.clock = lambda: datetime.now(UTC)  # rows stamped by the database and the runtime agree
    ids = {"approval": h.deliver(load_payload("purchase_approved.json"))}
    ids["linked"] = link(h)
    ids["protest"] = h.deliver(load_payload("purchase_protest.json"))
    with h.runtime.sessions.begin() as session:
        student = session.scalar(select(Student).where(Student.email == ANA))
        record_history(
            session,
            kind="replay",
            at=datetime.now(UTC),
            student_id=student.id,
            event_id=ids["protest"],
            actor="cli",
            rules_version="abc123",
            detail={"previous_status": "needs_attention", "previous_reason": "no product matches id 1111111"},
        )
    return ids


def test_the_timeline_in_time_order(make_harness, engine_cli):
    h = make_harness()
    ids = ana_disputes(h)
    with h.runtime.sessions() as session:
        [code] = [r.params["code"] for r in session.scalars(select(ActionRun)) if r.action == "issue_token"]
    result = engine_cli(h.runtime.settings.database_url, "student", " Ana.Exemplo@example.com ")
    assert result.returncode == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"student     {ANA}  Ana Exemplo Souza  (Discord 80351110224678912)"
    assert lines[1].startswith("membership  curso: disputed since ")
    body = [line[21:] for line in lines[2:-1]]  # without the time column
    stamps = [line[:19] for line in lines[2:-1]]
    assert stamps == sorted(stamps)
    assert lines[-1] == f"{len(body)} entries"
    kinds = [line.split()[0] for line in body]
    assert set(kinds) == {"event", "transition", "step", "grant", "timer", "alert", "history"}
    a, linked, p = ids["approval"], ids["linked"], ids["protest"]
    expected_in_order = [
        f"event       #{a} PURCHASE_APPROVED (hotmart) processed [curso]",
        f"transition  curso: new -> pending_onboarding (purchase_not_linked, event #{a})",
        f"event       #{linked} DISCORD_LINKED (bot) processed",
        f"transition  curso: pending_onboarding -> active (linked, event #{linked})",
        f"step        #{linked}.1 cancel_timers(events=['ONBOARDING_REMINDER', 'TOKEN_EXPIRED']) -> done",
        "grant       curso: discord_role 1180000000000000001",
        f"event       #{p} PURCHASE_PROTEST (hotmart) processed [curso]",
        f"transition  curso: active -> disputed (dispute_opened, event #{p})",
        f"history     event #{p} replayed (was needs_attention: no product matches id 1111111) by cli, rules abc123",
    ]
    positions = [_index(body, line) for line in expected_in_order]
    assert positions == sorted(positions), body
    reminder = [line for line in body if line.startswith("timer       curso: ONBOARDING_REMINDER due ")]
    assert len(reminder) == 1 and reminder[0].endswith("(cancelled)")
    [alert] = [line for line in body if line.startswith("alert")]
    assert "PURCHASE_PROTEST" in alert and ANA in alert
    # Every step with its result; the code itself never.
    assert sum(kind == "step" for kind in kinds) == len(_runs(h))
    assert any(line.startswith(f"step        #{a}.1 issue_token(code='[redacted]'") for line in body)
    assert code not in result.stdout


def test_the_timeline_as_json(make_harness, engine_cli):
    h = make_harness()
    ids = ana_disputes(h)
    result = engine_cli(h.runtime.settings.database_url, "student", ANA, "--json")
    assert result.returncode == 0, result.output
    out = json.loads(result.stdout)
    assert out["student"]["email"] == ANA
    assert [(m["product"], m["state"]) for m in out["memberships"]] == [("curso", "disputed")]
    entries = out["timeline"]
    assert [e["at"] for e in entries] == sorted(e["at"] for e in entries)
    transitions = [(e["from_state"], e["to_state"], e["event_id"]) for e in entries if e["kind"] == "transition"]
    assert transitions == [
        ("new", "pending_onboarding", ids["approval"]),
        ("pending_onboarding", "active", ids["linked"]),
        ("active", "disputed", ids["protest"]),
    ]
    [history] = [e for e in entries if e["kind"] == "history"]
    assert (history["history_kind"], history["event_id"]) == ("replay", ids["protest"])


def test_an_unknown_student(make_harness, engine_cli):
    h = make_harness()
    result = engine_cli(h.runtime.settings.database_url, "student", "nobody@example.com")
    assert (result.returncode, result.stderr) == (1, "error: student nobody@example.com not found\n")


def _index(lines: list[str], wanted: str) -> int:
    found = [i for i, line in enumerate(lines) if line.startswith(wanted)]
    assert found, f"{wanted!r} not in the timeline:\n" + "\n".join(lines)
    return found[0]


def _runs(h) -> list[ActionRun]:
    with h.runtime.sessions() as session:
        return list(session.scalars(select(ActionRun)))


def test_read_only_needs_no_service_secret(make_harness, engine_cli, monkeypatch):
    h = make_harness()
    h.deliver(load_payload("purchase_approved.json"))
    monkeypatch.setenv("ENGINE_ENV", "production")
    monkeypatch.delenv("HOTMART_HOTTOK", raising=False)
    monkeypatch.delenv("ADMIN_API_TOKEN", raising=False)
    result = engine_cli(h.runtime.settings.database_url, "student", ANA)
    assert result.returncode == 0, result.output
    assert result.stdout.startswith(f"student     {ANA}")


def test_an_import_reads_as_what_it_placed(make_harness, engine_cli):
    from engine.service.student_import import SeedRow, seed

    h = make_harness()
    rows = [
        SeedRow(2, ANA, "curso", "active", "Ana", None, "80351110224678912"),
        SeedRow(3, "bia@example.com", "comunidade", "pending_onboarding", "Bia", None, None),
    ]
    with h.runtime.sessions.begin() as session:
        seed(session, rows, h.runtime.rules.rules, adopt_access=True, source="students.csv")
    shown = {
        email: [
            line.split(None, 3)[-1]  # without the time and the kind
            for line in engine_cli(h.runtime.settings.database_url, "student", email).stdout.splitlines()
            if " history " in line
        ]
        for email in (ANA, "bia@example.com")
    }
    assert shown == {
        ANA: ["curso: imported as active from students.csv line 2 (linked; access adopted) by engine import-students"],
        "bia@example.com": [
            "comunidade: imported as pending_onboarding from students.csv line 3 (not linked; access adopted)"
            " by engine import-students"
        ],
    }
