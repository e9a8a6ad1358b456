"""`engine plan`: a rules change measured against the memberships in PostgreSQL."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli import main
from engine.db.models import Membership, ScheduledEvent, Student
from engine.db.session import session_factory
from engine.settings import Settings, get_settings
from tests.conftest import RULES

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
ALUMNI_ROLE = "1180000000000000077"


@pytest.fixture
def env(pg: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("ENGINE_ENV", "test")
    monkeypatch.setenv("DATABASE_URL", pg)
    monkeypatch.setenv("RULES_DIR", str(RULES))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def candidate(tmp_path: Path) -> Path:
    target = tmp_path / "candidate"
    shutil.copytree(RULES, target)
    return target


def seed(pg: str, *memberships: tuple[str, str, str, bool]) -> None:
    """(email, product, state, linked) rows; a student's memberships share the student."""
    sessions = session_factory(Settings(ENGINE_ENV="test", database_url=pg))
    with sessions.begin() as session:
        students: dict[str, Student] = {}
        for index, (email, product, state, linked) in enumerate(memberships):
            student = students.get(email)
            if student is None:
                student = Student(email=email, discord_id=str(80351110224670000 + index) if linked else None)
                session.add(student)
                session.flush()
                students[email] = student
            session.add(Membership(student_id=student.id, product_key=product, state=state))


def add_timer(pg: str, email: str, product: str, event: str) -> None:
    sessions = session_factory(Settings(ENGINE_ENV="test", database_url=pg))
    with sessions.begin() as session:
        membership = (
            session.query(Membership)
            .join(Student)
            .filter(Student.email == email, Membership.product_key == product)
            .one()
        )
        session.add(
            ScheduledEvent(
                membership_id=membership.id,
                event_type=event,
                due_at=NOW + timedelta(days=7),
                status="pending",
            )
        )


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new))


def plan(*args: str):
    get_settings.cache_clear()
    return CliRunner().invoke(main, ["plan", *args])


def test_story_35_a_role_added_to_a_product_is_counted_per_product(env, pg, candidate):
    seed(
        pg,
        *[(f"aluno{i}@example.com", "curso", "active", True) for i in range(4)],
        ("onboarding@example.com", "curso", "pending_onboarding", False),
        ("refunded@example.com", "curso", "refunded", True),
        ("assinante@example.com", "comunidade", "active", True),
    )
    edit(candidate / "products" / "curso.yaml", '["1180000000000000001"]', f'["1180000000000000001", "{ALUMNI_ROLE}"]')

    result = plan("--rules", str(candidate))

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"curso: 4 students would gain discord role {ALUMNI_ROLE} "
        "(e.g. aluno0@example.com, aluno1@example.com, aluno2@example.com)"
    ]


def test_access_is_a_union_a_role_another_product_grants_is_no_loss(env, pg, candidate):
    seed(
        pg,
        ("only-course@example.com", "curso", "active", True),
        ("bundle@example.com", "curso", "active", True),
        ("bundle@example.com", "combo", "active", True),
    )
    edit(candidate / "products" / "curso.yaml", "classes: [curso-2026]", "classes: []")
    edit(candidate / "products" / "curso.yaml", '["1180000000000000001"]', "[]")

    result = plan("--rules", str(candidate), "--json")

    assert result.exit_code == 0, result.output
    access = json.loads(result.stdout)["access"]
    assert {(a["kind"], a["resource"], a["lose"], tuple(a["lose_examples"])) for a in access} == {
        ("discord_role", "1180000000000000001", 1, ("only-course@example.com",)),
        ("class", "curso-2026", 1, ("only-course@example.com",)),
    }


def test_a_renamed_state_without_renamed_states_leaves_memberships_behind(env, pg, candidate):
    seed(
        pg,
        ("bia@example.com", "comunidade", "overdue", True),
        ("caio@example.com", "comunidade", "overdue", True),
        ("ana@example.com", "comunidade", "active", True),
    )
    lifecycle = candidate / "lifecycle.yaml"
    lifecycle.write_text(lifecycle.read_text().replace("overdue", "atrasado"))

    result = plan("--rules", str(candidate))

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert (
        "state 'overdue' is gone: 2 memberships in it would need attention (declare lifecycle.renamed_states) "
        "(e.g. bia@example.com, caio@example.com)"
    ) in lines
    changed = next(line for line in lines if line.startswith("transitions changed: "))
    assert "payment_late" in changed.split(": ", 1)[1].split(", ")
    # The renamed state grants what overdue granted: nobody gains or loses access.
    assert not [line for line in lines if " would gain " in line or " would lose " in line]


def test_timers_are_counted_when_their_state_loses_the_transition(env, pg, candidate):
    seed(pg, ("bia@example.com", "comunidade", "overdue", True))
    add_timer(pg, "bia@example.com", "comunidade", "GRACE_EXPIRED")
    edit(
        candidate / "lifecycle.yaml",
        "      from: [overdue, disputed]               # a dispute",
        "      from: [disputed]  # a dispute",
    )

    result = plan("--rules", str(candidate))

    assert result.exit_code == 0, result.output
    assert "1 pending timer(s) GRACE_EXPIRED in state 'overdue' would have no transition" in result.stdout.splitlines()
    assert "transitions changed: grace_over" in result.stdout.splitlines()


def test_no_change_says_so(env, pg):
    seed(pg, ("ana@example.com", "curso", "active", True))
    result = plan("--rules", str(RULES))
    assert result.exit_code == 0
    assert result.stdout.strip() == "no change for the 1 membership in the database"


def test_against_a_git_ref_compares_the_work_tree_with_the_commit(env, pg, tmp_path: Path, monkeypatch):
    repo = tmp_path / "repo"
    shutil.copytree(RULES, repo / "rules")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "-C", str(repo), "add", "."], check=True)
    subprocess.run([*git, "-C", str(repo), "commit", "-qm", "rules"], check=True)
    edit(
        repo / "rules" / "products" / "curso.yaml",
        '["1180000000000000001"]',
        f'["1180000000000000001", "{ALUMNI_ROLE}"]',
    )
    monkeypatch.setenv("RULES_DIR", str(repo / "rules"))
    seed(pg, ("ana@example.com", "curso", "active", True))

    result = plan("--against", "HEAD")

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"curso: 1 student would gain discord role {ALUMNI_ROLE} (e.g. ana@example.com)"
    ]
    bad = plan("--against", "no-such-ref")
    assert bad.exit_code == 1
    assert "cannot read the rules at 'no-such-ref'" in bad.stderr


def test_one_of_rules_or_against_is_required(env):
    assert plan().exit_code == 2
    assert "give either --rules DIR (candidate) or --against GIT_REF (baseline)" in plan().stderr


def test_invalid_candidate_rules_are_listed(env, pg, candidate):
    edit(candidate / "lifecycle.yaml", "initial: new", "initial: nowhere")
    result = plan("--rules", str(candidate))
    assert result.exit_code == 1
    assert "error(s) in" in result.stderr
