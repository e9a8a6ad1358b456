"""Rules that fit the data: what the database uses that the rules lack, and declared renames."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from engine.db.models import Alert, Event, History, Membership, ScheduledEvent, Student
from engine.pipeline.rules_fit import check_database
from engine.pipeline.sweep import sweep
from engine.rules import load_rules
from tests.conftest import RULES, load_payload
from tests.pipeline.test_processing import link, states

RENAME = "  renamed_states: {overdue: atrasado}\n"


def copy_rules(tmp_path: Path) -> Path:
    target = tmp_path / "rules"
    shutil.copytree(RULES, target)
    return target


def rename_overdue(rules_dir: Path, *, declare: bool) -> None:
    """What an admin does: every `overdue` of lifecycle.yaml (and of the rule tests) becomes `atrasado`."""
    for test_file in (rules_dir / "tests").glob("*.yaml"):
        test_file.write_text(re.sub(r"\boverdue\b", "atrasado", test_file.read_text(encoding="utf-8")))
    path = rules_dir / "lifecycle.yaml"
    text = re.sub(r"\boverdue\b", "atrasado", path.read_text(encoding="utf-8"))
    if declare:
        text = text.replace("  # Events the engine raises itself", RENAME + "  # Events the engine raises itself")
    path.write_text(text, encoding="utf-8")


def states_line(rules_dir: Path) -> int:
    lines = (rules_dir / "lifecycle.yaml").read_text(encoding="utf-8").splitlines()
    return lines.index("  states:") + 1


def overdue_subscriber(h) -> None:
    """Ana subscribes, links Discord, then a renewal fails: `overdue` with a GRACE_EXPIRED timer."""
    h.deliver(load_payload("purchase_approved_subscription_first.json"))
    link(h)
    h.deliver(load_payload("purchase_delayed.json"))
    assert states(h) == {"comunidade": "overdue"}


def renewal(envelope_id: str) -> dict:
    """The renewal charge that pays the late one, created after the late-payment notice."""
    delayed = load_payload("purchase_delayed.json")
    return load_payload("purchase_approved_renewal.json") | {
        "id": envelope_id,
        "creation_date": delayed["creation_date"] + 1000,
    }


def add_members(h, state: str, product: str, emails: list[str]) -> None:
    with h.runtime.sessions.begin() as session:
        for email in emails:
            student = Student(email=email)
            session.add(student)
            session.flush()
            session.add(Membership(student_id=student.id, product_key=product, state=state))


def check(h, rules_dir: Path):
    with h.runtime.sessions() as session:
        return check_database(session, load_rules(rules_dir))


def test_the_shipped_rules_fit_a_database_they_wrote(make_harness):
    h = make_harness()
    overdue_subscriber(h)
    fit = check(h, RULES)
    assert fit.misfits == [] and fit.renames == []
    assert (fit.memberships, fit.pending_timers) == (1, 1)


def test_a_state_a_product_and_a_timer_event_the_rules_lost(make_harness, tmp_path):
    rules_dir = copy_rules(tmp_path)
    h = make_harness(rules_dir=rules_dir)
    overdue_subscriber(h)
    add_members(h, "overdue", "curso", ["dora@example.com", "caio@example.com", "bia@example.com"])
    add_members(h, "active", "mentoria", ["eva@example.com"])
    with h.runtime.sessions.begin() as session:
        membership = session.scalar(select(Membership).where(Membership.product_key == "mentoria"))
        session.add(ScheduledEvent(membership_id=membership.id, event_type="MENTORING_ENDS", due_at=h.clock()))
    rename_overdue(rules_dir, declare=False)

    fit = check(h, rules_dir)
    line = states_line(rules_dir)
    events_line = [
        n for n, text in enumerate((rules_dir / "lifecycle.yaml").read_text().splitlines(), 1) if text == "  events:"
    ][0]
    assert [str(m) for m in fit.misfits] == [
        f"rules/lifecycle.yaml:{line}: state 'overdue' is not defined, but 4 memberships and 1 pending timer use it; "
        "e.g. ana.exemplo@example.com (comunidade), bia@example.com (curso), caio@example.com (curso); "
        "declare lifecycle.renamed_states: {overdue: <new state>} or keep the state",
        "rules/products/: product 'mentoria' is not defined, but 1 membership and 1 pending timer use it; "
        "e.g. eva@example.com (mentoria); restore its file under rules/products/ "
        "(a product with students cannot be removed)",
        f"rules/lifecycle.yaml:{events_line}: timer event 'MENTORING_ENDS' is not defined, but 1 pending timer use "
        "it; e.g. eva@example.com (mentoria); declare it again under lifecycle.events (the timers fire it)",
    ]


def test_check_database_cli_fails_then_passes_with_the_rename(make_harness, tmp_path, engine_cli):
    rules_dir = copy_rules(tmp_path)
    h = make_harness(rules_dir=rules_dir)
    overdue_subscriber(h)
    rename_overdue(rules_dir, declare=False)
    database = h.runtime.settings.database_url
    failed = engine_cli(database, "check", "--database", "--rules", str(rules_dir))
    assert failed.returncode == 1, failed.output
    assert failed.stderr.splitlines() == [
        f"rules/lifecycle.yaml:{states_line(rules_dir)}: state 'overdue' is not defined, but 1 membership "
        "and 1 pending timer use it; e.g. ana.exemplo@example.com (comunidade); declare "
        "lifecycle.renamed_states: {overdue: <new state>} or keep the state",
        "1 error(s): the database uses what the rules no longer define",
    ]
    # Without --database the rules alone are fine: the mistake only shows against the data.
    assert engine_cli(database, "check", "--rules", str(rules_dir)).returncode == 0

    rename_overdue(rules_dir, declare=True)
    passed = engine_cli(database, "check", "--database", "--rules", str(rules_dir))
    assert passed.returncode == 0, passed.output
    assert passed.stdout.splitlines()[1:] == [
        "note: 1 membership in 'overdue' will move to 'atrasado' when a worker loads these rules (renamed_states)",
        "database ok: 1 memberships and 1 pending timers fit the rules",
    ]
    assert states(h) == {"comunidade": "overdue"}  # a check changes nothing


def test_check_database_cli_cannot_reach_the_database(engine_cli):
    result = engine_cli("postgresql://nobody@127.0.0.1:1/none", "check", "--database", "--rules", str(RULES))
    assert result.returncode == 1
    assert result.stderr.startswith("error: database (DATABASE_URL): ")
    assert "Traceback" not in result.output


def history(h) -> list[History]:
    with h.runtime.sessions() as session:
        return list(session.scalars(select(History).order_by(History.id)))


def test_the_worker_moves_renamed_memberships_once_and_records_it(make_harness, tmp_path):
    rules_dir = copy_rules(tmp_path)
    h = make_harness(rules_dir=rules_dir)
    overdue_subscriber(h)
    rename_overdue(rules_dir, declare=True)

    # The next event reloads the rules: the membership moves first, then the event plans on it.
    h.deliver(renewal("renewal-after-rename"))
    assert states(h) == {"comunidade": "active"}
    [entry] = history(h)
    assert entry.kind == "state_renamed" and entry.actor == "worker"
    assert entry.rules_version == h.runtime.rules.version
    assert entry.detail == {"from": "overdue", "to": "atrasado", "pending_timers": ["GRACE_EXPIRED"]}
    with h.runtime.sessions() as session:
        ana = session.scalar(select(Student).where(Student.email == "ana.exemplo@example.com"))
        assert (entry.student_id, entry.membership_id) == (ana.id, ana.memberships[0].id)
    sweep(h.runtime)
    assert len(history(h)) == 1  # once


def test_the_sweep_moves_what_a_process_on_old_rules_wrote_since(make_harness, tmp_path):
    rules_dir = copy_rules(tmp_path)
    rename_overdue(rules_dir, declare=True)
    h = make_harness(rules_dir=rules_dir)
    add_members(h, "overdue", "comunidade", ["bia@example.com"])
    sweep(h.runtime)
    assert states(h) == {"comunidade": "atrasado"}
    add_members(h, "overdue", "curso", ["caio@example.com"])  # another worker, still on the old rules
    sweep(h.runtime)
    with h.runtime.sessions() as session:
        assert set(session.scalars(select(Membership.state))) == {"atrasado"}
    assert [e.detail["from"] for e in history(h)] == ["overdue", "overdue"]


def test_the_worker_alerts_once_per_cause_when_rules_lose_a_state(make_harness, tmp_path):
    rules_dir = copy_rules(tmp_path)
    h = make_harness(rules_dir=rules_dir)
    overdue_subscriber(h)
    assert alerts(h) == []
    rename_overdue(rules_dir, declare=False)
    sweep(h.runtime)  # the sweep picks up the new rules (events or not) and compares them with the data
    [alert] = alerts(h)
    assert alert.kind == "rules.database"
    assert "state 'overdue' is not defined, but 1 membership and 1 pending timer use it" in alert.message
    assert "ana.exemplo@example.com (comunidade)" in alert.message
    # Another load (a restart, another commit) with the same misfit counts in the same alert.
    h.runtime.rules.reload()
    delayed_renewal = h.deliver(renewal("renewal-after-bad-rename"))
    sweep(h.runtime)
    [alert] = alerts(h)
    assert alert.count == 2
    assert states(h) == {"comunidade": "overdue"}  # never guessed
    with h.runtime.sessions() as session:
        assert session.get(Event, delayed_renewal).status == "needs_attention"


def alerts(h) -> list[Alert]:
    with h.runtime.sessions() as session:
        return list(session.scalars(select(Alert).where(Alert.kind == "rules.database").order_by(Alert.id)))


@pytest.mark.parametrize("declare", [True, False])
def test_rules_record_the_declared_renames(tmp_path, declare):
    rules_dir = copy_rules(tmp_path)
    rename_overdue(rules_dir, declare=declare)
    rules = load_rules(rules_dir)
    assert rules.renamed_states == ({"overdue": "atrasado"} if declare else {})
    assert "atrasado" in rules.states and "overdue" not in rules.states


def test_check_database_speaks_portuguese_when_asked(make_harness, tmp_path, engine_cli, monkeypatch):
    rules_dir = copy_rules(tmp_path)
    h = make_harness(rules_dir=rules_dir)
    overdue_subscriber(h)
    rename_overdue(rules_dir, declare=False)
    monkeypatch.setenv("ENGINE_LANG", "pt-BR")
    failed = engine_cli(h.runtime.settings.database_url, "check", "--database", "--rules", str(rules_dir))
    assert failed.returncode == 1
    assert failed.stderr.splitlines() == [
        f"rules/lifecycle.yaml:{states_line(rules_dir)}: o estado 'overdue' não está definido, mas 1 matrícula e "
        "1 timer pendente o usam; ex.: ana.exemplo@example.com (comunidade); declare lifecycle.renamed_states: "
        "{overdue: <novo estado>} ou mantenha o estado",
        "1 erro(s): o banco de dados usa o que as regras não definem mais",
    ]
    rename_overdue(rules_dir, declare=True)
    passed = engine_cli(h.runtime.settings.database_url, "check", "--database", "--rules", str(rules_dir))
    assert passed.stdout.splitlines()[1:] == [
        "nota: 1 matrícula em 'overdue' passa(m) para 'atrasado' quando um worker carregar estas regras "
        "(renamed_states)",
        "banco de dados ok: 1 matrícula(s) e 1 timer(s) pendente(s) condizem com as regras",
    ]
