"""`engine import-students`: the one-time seed of students a course already has."""

from __future__ import annotations

from click.testing import CliRunner
from sqlalchemy import func, select

from engine.cli import main
from engine.db.models import ClassEnrollment, Grant, Membership, Student
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
