"""`engine import-students`: the one-time seed of students a course already has."""

from __future__ import annotations

from click.testing import CliRunner
from sqlalchemy import func, select

from engine.cli import main
from engine.db.models import ClassEnrollment, Grant, History, Membership, Student
from engine.settings import get_settings
from tests.conftest import load_payload

GOOD = """email,product,state,name,phone,discord_id
Ana.Exemplo@example.com,curso,active,Ana,+5511999990001,80351110224678912
bia@example.com,comunidade,,Bia,,
"""


def run(tmp_path, monkeypatch, pg, text: str, *args: str):
    monkeypatch.setenv("DATABASE_URL", pg)
    monkeypatch.setenv("ENGINE_ENV", "test")
    get_settings.cache_clear()
    path = tmp_path / "students.csv"
    path.write_text(text, encoding="utf-8")
    try:
        return CliRunner().invoke(main, ["import-students", str(path), *args]), path
    finally:
        get_settings.cache_clear()


def count(h, model) -> int:
    with h.runtime.sessions() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_import_creates_students_memberships_and_adopts_access(make_harness, pg, tmp_path, monkeypatch):
    h = make_harness()
    result, _ = run(tmp_path, monkeypatch, pg, GOOD, "--adopt-access")
    assert result.exit_code == 0, result.output
    assert "created 2 student(s) and 2 membership(s)" in result.output
    with h.runtime.sessions() as session:
        states = {(m.student.email, m.product_key): m.state for m in session.scalars(select(Membership))}
        ana = session.scalars(select(Student).where(Student.email == "ana.exemplo@example.com")).one()
        assert ana.discord_id == "80351110224678912"
        grants = {(g.kind, g.resource) for g in session.scalars(select(Grant).where(Grant.student_id == ana.id))}
    assert states == {("ana.exemplo@example.com", "curso"): "active", ("bia@example.com", "comunidade"): "active"}
    assert grants == {("discord_role", "1180000000000000001"), ("manychat_tag", "aluno-curso"), ("class", "curso-2026")}
    assert count(h, ClassEnrollment) == 1
    # Adopted access is the engine's to revoke: a refund removes the imported role.
    h.deliver(load_payload("purchase_refunded.json"))
    removed = [s.params["role_ids"] for s, _ in h.discord.calls if s.action == "remove_role"]
    assert removed == [["1180000000000000001"]]
    # Running the same file again changes nothing.
    again, _ = run(tmp_path, monkeypatch, pg, GOOD, "--adopt-access")
    assert "created 0 student(s) and 0 membership(s) (2 already there" in again.output


def test_a_file_with_any_bad_row_imports_nothing(make_harness, pg, tmp_path, monkeypatch):
    h = make_harness()
    bad = GOOD + "not-an-email,curso,,,,\ncarla@example.com,cursinho,actve,,5511,abc\n"
    result, path = run(tmp_path, monkeypatch, pg, bad)
    assert result.exit_code == 1
    assert f"{path}:4: invalid e-mail 'not-an-email'" in result.output
    assert f"{path}:5: unknown product 'cursinho'" in result.output
    assert f"{path}:5: unknown state 'actve'" in result.output
    assert f"{path}:5: phone '5511' is not E.164" in result.output
    assert f"{path}:5: discord_id 'abc' is not a Discord id" in result.output
    assert "nothing imported" in result.output
    assert count(h, Student) == 0


def test_dry_run_checks_and_changes_nothing(make_harness, pg, tmp_path, monkeypatch):
    h = make_harness()
    result, _ = run(tmp_path, monkeypatch, pg, GOOD, "--dry-run")
    assert result.exit_code == 0 and "would create 2 student(s)" in result.output
    assert count(h, Student) == 0 and count(h, Membership) == 0


def test_a_discord_account_of_another_student_is_refused(make_harness, pg, tmp_path, monkeypatch):
    h = make_harness()
    taken = GOOD + "carla@example.com,combo,active,,,80351110224678912\n"
    result, _ = run(tmp_path, monkeypatch, pg, taken)
    assert result.exit_code == 1
    assert "discord_id 80351110224678912 is linked to ana.exemplo@example.com" in result.output
    assert count(h, Student) == 0  # rolled back whole


SEMICOLONS = """email;product;state;name;phone;discord_id
ana.exemplo@example.com;curso;active;Ana Exemplo;11 98888-7777;
"bia@example.com";comunidade;;"Silva; Bia";(21) 3333-4444;
"""


def test_a_semicolon_spreadsheet_is_sniffed_and_phones_normalised_like_the_webhook(
    make_harness, pg, tmp_path, monkeypatch
):
    h = make_harness()
    result, _ = run(tmp_path, monkeypatch, pg, SEMICOLONS)
    assert result.exit_code == 0, result.output
    with h.runtime.sessions() as session:
        people = {s.email: (s.name, s.phone) for s in session.scalars(select(Student))}
    assert people == {
        "ana.exemplo@example.com": ("Ana Exemplo", "+5511988887777"),
        "bia@example.com": ("Silva; Bia", "+552133334444"),
    }


def test_every_bad_row_is_reported_in_one_pass_as_file_line(make_harness, pg, tmp_path, monkeypatch):
    h = make_harness()
    first, _ = run(tmp_path, monkeypatch, pg, GOOD)
    assert first.exit_code == 0, first.output
    bad = (
        "email;product;phone;discord_id\n"
        "carla@example.com;curso;abc;\n"  # line 2: a phone that cannot be normalised
        "dora@example.com;combo;;80351110224678912\n"  # line 3: Ana's Discord account (a database check)
        "eva@example.com;cursinho;;\n"  # line 4: unknown product
    )
    result, path = run(tmp_path, monkeypatch, pg, bad)
    assert result.exit_code == 1
    errors = result.stderr.splitlines()
    assert errors[0] == f"{path}:2: phone 'abc' is not E.164 and cannot be made so " + (
        "(e.g. +5511988887777, or 11 98888-7777 for Brazil)"
    )
    assert errors[1] == f"{path}:3: discord_id 80351110224678912 is linked to ana.exemplo@example.com"
    assert errors[2].startswith(f"{path}:4: unknown product 'cursinho'")
    assert errors[3] == "3 error(s); nothing imported"
    assert count(h, Student) == 2  # only the first file's students


def test_the_import_is_recorded_in_each_students_history(make_harness, pg, tmp_path, monkeypatch):
    h = make_harness()
    result, path = run(tmp_path, monkeypatch, pg, GOOD, "--adopt-access")
    assert result.exit_code == 0, result.output
    with h.runtime.sessions() as session:
        entries = session.execute(
            select(History, Student.email).join(Student, Student.id == History.student_id).order_by(History.id)
        ).all()
        seen = [(e.kind, email, e.membership_id is not None, e.detail) for e, email in entries]
    assert seen == [
        (
            "imported",
            "ana.exemplo@example.com",
            True,
            {
                "file": str(path),
                "line": 2,
                "product": "curso",
                "state": "active",
                "adopt_access": True,
                # the snapshot a late event's replay starts from (engine.pipeline.baseline)
                "grants": {
                    "class": ["curso-2026"],
                    "discord_role": ["1180000000000000001"],
                    "manychat_tag": ["aluno-curso"],
                },
                "timers": {},
                "linked": True,
            },
        ),
        (
            "imported",
            "bia@example.com",
            True,
            {
                "file": str(path),
                "line": 3,
                "product": "comunidade",
                "state": "active",
                "adopt_access": True,
                "grants": {"discord_role": ["1180000000000000002"], "manychat_tag": ["assinante"]},
                "timers": {},
                "linked": False,
            },
        ),
    ]
    # Run again: nothing new imported, nothing new recorded.
    again, _ = run(tmp_path, monkeypatch, pg, GOOD)
    assert again.exit_code == 0
    assert count(h, History) == 2


def test_seed_reports_progress_once_per_row(make_harness):
    from engine.service.student_import import read_rows, seed

    h = make_harness()
    rows, errors = read_rows(GOOD, h.runtime.rules.rules)
    assert errors == [] and len(rows) == 2
    ticks: list[int] = []
    with h.runtime.sessions() as session:
        report = seed(session, rows, h.runtime.rules.rules, adopt_access=False, progress=ticks.append)
        session.rollback()
    assert ticks == [1, 1] and report.memberships_created == 2
