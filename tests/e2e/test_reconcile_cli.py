"""`engine reconcile` as an admin runs it: the real command, PostgreSQL, the fake servers."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from engine.db.models import Event, Grant, Membership, Student
from engine.db.session import session_factory
from engine.settings import Settings
from tests.cli import Ran, run_engine
from tests.e2e.conftest import ANA, stack_env

COURSE_ROLE = "1180000000000000001"


@pytest.fixture
def queue_name(redis_url: str) -> Iterator[str]:
    """A queue of the test's own for what `engine reconcile --apply` enqueues (no worker runs here), emptied after."""
    from engine.worker import make_huey

    name = f"{os.environ['QUEUE_NAME']}-reconcile-cli"
    yield name
    make_huey(Settings(ENGINE_ENV="test", redis_url=redis_url, queue_name=name)).flush()


def engine(env: dict[str, str], *args: str) -> Ran:
    return run_engine(env, "reconcile", *args)


def seed(pg: str, *, students: int = 1, state: str = "active") -> None:
    """Ana (and ``students - 1`` others) active in curso, linked; the ledger says the engine gave R_course."""
    sessions = session_factory(Settings(ENGINE_ENV="test", database_url=pg))
    with sessions.begin() as session:
        for i in range(students):
            email, discord_id = (ANA["email"], ANA["discord_id"]) if i == 0 else (f"s{i}@example.com", str(10**17 + i))
            student = Student(email=email, discord_id=discord_id)
            session.add(student)
            session.flush()
            membership = Membership(student_id=student.id, product_key="curso", state=state)
            session.add(membership)
            session.flush()
            session.add(
                Grant(student_id=student.id, membership_id=membership.id, kind="discord_role", resource=COURSE_ROLE)
            )


@pytest.mark.slow
def test_report_json_and_last(pg, redis_url, fakes):
    seed(pg)  # the fake guild has Ana without R_course
    env = stack_env(pg, redis_url, fakes)

    done = engine(env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "1 student(s) compared (discord_role, manychat_tag, class)"
    assert lines[1] == (
        "note: classes compared with the engine's own table, not the course platform's list: "
        "COURSE_WEBHOOK_ENABLED is off"
    )
    assert lines[2].split() == ["product", "missing", "extra", "not", "in", "server", "no", "ManyChat", "contact"]
    assert lines[3].split() == ["curso", "3", "0", "0", "0"]  # the role, the tag and the class
    assert f"  {ANA['email']}: role {COURSE_ROLE} (curso)" in lines
    assert lines[-1] == "run 1: report only; engine reconcile --apply fixes it"

    as_json = json.loads(engine(env, "--json").stdout)
    assert as_json["run_id"] == 2 and as_json["totals"]["missing"] == 3 and as_json["applied"] is None
    assert {(m["kind"], m["resource"]) for m in as_json["missing"]} == {
        ("discord_role", COURSE_ROLE),
        ("manychat_tag", "aluno-curso"),
        ("class", "curso-2026"),
    }

    last = engine(env, "--last")
    assert last.returncode == 0
    assert last.stdout.splitlines()[0].startswith("run 2 (cli, report): reported")
    assert "  curso: missing 3, extra 0, not in server 0, subscribers not found 0" in last.stdout
    assert fakes.discord.member_roles(ANA["discord_id"]) == set()  # a report changes nothing


@pytest.mark.slow
def test_report_against_the_course_platforms_list(pg, redis_url, fakes):
    """COURSE_ENROLLMENTS_URL set: the platform's list is compared, not the engine's table (which has
    Ana); an enrollment made on the platform by hand is reported; a refused read leaves classes not
    compared."""
    from engine.pipeline.classes import enroll_student
    from tests.fakes import course_platform_app
    from tests.fakes.server import serve

    seed(pg)
    sessions = session_factory(Settings(ENGINE_ENV="test", database_url=pg))
    with sessions.begin() as session:
        enroll_student(session, session.scalar(select(Student.id)), "curso-2026")
    app = course_platform_app.create_app()
    platform = app.state.fake
    platform.enroll_by_hand("curso-2026", "teacher@example.com")
    with serve(app) as url:
        env = stack_env(
            pg,
            redis_url,
            fakes,
            COURSE_WEBHOOK_ENABLED="true",
            COURSE_WEBHOOK_URL=f"{url}/webhooks",
            COURSE_WEBHOOK_SECRET=course_platform_app.SECRET,
            COURSE_ENROLLMENTS_URL=f"{url}/enrollments",
        )
        done = engine(env, "--json")
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert "class" in report["checked"]
        assert ("class", "curso-2026") in {(m["kind"], m["resource"]) for m in report["missing"]}
        assert report["notes"] == [
            "class curso-2026: 1 enrollment(s) on the course platform that the engine did not give and the rules "
            "do not allow, left as they are: teacher@example.com"
        ]
        assert [(read.params, read.verified) for read in platform.reads] == [({"class": "curso-2026"}, True)]

        platform.secret = "whsec_b3RoZXItc2VjcmV0LW9mLXRoZS1wbGF0Zm9ybQ=="  # it verifies with another secret
        refused = engine(env)
    assert refused.returncode == 0, refused.stderr
    lines = refused.stdout.splitlines()
    assert lines[0] == "1 student(s) compared (discord_role, manychat_tag)"
    assert lines[1].startswith(
        "note: classes not compared: classes.unauthorized: enrollments of curso-2026, page 1: the course platform "
        "answered HTTP 401: it refused the signature; COURSE_WEBHOOK_SECRET must be the secret"
    )


@pytest.mark.slow
def test_apply_held_by_the_guard_exits_3_and_lists_the_revocations(pg, redis_url, fakes, queue_name):
    seed(pg, students=12, state="refunded")  # the rules say refunded students hold nothing
    for i in range(1, 12):
        fakes.discord.add_member(str(10**17 + i), [COURSE_ROLE])
    fakes.discord.set_member_roles(ANA["discord_id"], [COURSE_ROLE])
    env = stack_env(pg, redis_url, fakes, QUEUE_NAME=queue_name)

    held = engine(env, "--apply")
    assert held.returncode == 3
    assert "HELD by the blast-radius guard: 12 revocation(s), more than 10" in held.stdout
    assert f"  would revoke {ANA['email']}: role {COURSE_ROLE} (curso)" in held.stderr.splitlines()
    sessions = session_factory(Settings(ENGINE_ENV="test", database_url=pg))
    with sessions() as session:
        assert session.scalars(select(Event)).all() == []

    applied = engine(env, "--apply", "--max-revokes", "12")
    assert applied.returncode == 0, applied.stderr
    assert "queued 0 grant(s) and 12 revocation(s) as 12 RECONCILE event(s)" in applied.stdout
    with sessions() as session:
        events = session.scalars(select(Event)).all()
    assert len(events) == 12 and {e.status for e in events} == {"processing"}  # the worker runs them
    from engine.worker import make_huey

    assert make_huey(Settings(ENGINE_ENV="test", redis_url=redis_url, queue_name=queue_name)).pending_count() == 12

    usage = engine(env, "--confirm")
    assert usage.returncode == 2 and "--grants-only and --confirm go with --apply" in usage.stderr


@pytest.mark.slow
def test_plan_apply_hands_the_candidate_rules_diff_to_reconcile(pg, redis_url, fakes, queue_name, tmp_path):
    """`engine plan --apply`: the summary, then the candidate's access diff applied through reconcile."""
    import shutil

    from tests.conftest import RULES

    alumni = "1180000000000000077"
    seed(pg, students=3)
    for i in range(1, 3):
        fakes.discord.add_member(str(10**17 + i), [COURSE_ROLE])
    fakes.discord.set_member_roles(ANA["discord_id"], [COURSE_ROLE])
    fakes.discord.add_role(alumni, "Alumni", position=1)
    candidate = tmp_path / "rules"
    shutil.copytree(RULES, candidate)
    product = candidate / "products" / "curso.yaml"
    product.write_text(product.read_text().replace(f'["{COURSE_ROLE}"]', f'["{COURSE_ROLE}", "{alumni}"]'))
    env = stack_env(pg, redis_url, fakes, QUEUE_NAME=queue_name)

    def plan(*args: str) -> Ran:
        return run_engine(env, "plan", "--rules", str(candidate), *args)

    report_only = plan()
    assert report_only.returncode == 0, report_only.stderr
    assert report_only.stdout.splitlines()[0].startswith(f"curso: 3 students would gain discord role {alumni}")
    sessions = session_factory(Settings(ENGINE_ENV="test", database_url=pg))
    with sessions() as session:
        assert session.scalars(select(Event)).all() == []  # a plan alone writes nothing

    applied = plan("--apply")
    assert applied.returncode == 0, applied.stderr
    lines = applied.stdout.splitlines()
    assert lines[0].startswith(f"curso: 3 students would gain discord role {alumni}")
    assert any(line.startswith("run 1: queued ") and "RECONCILE event(s)" in line for line in lines), lines
    with sessions() as session:
        events = session.scalars(select(Event).where(Event.type == "RECONCILE")).all()
        runs = [e.action_runs for e in events]
    # Each student gets the new role; what they lack besides (tag, class) is fixed in the same events.
    assert len(events) == 3 and all(
        any(r.action == "add_role" and r.params["role_ids"] == [alumni] for r in steps) for steps in runs
    )

    usage = plan("--confirm")
    assert usage.returncode == 2 and "--confirm goes with --apply" in usage.stderr
