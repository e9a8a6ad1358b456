"""Reconciling N students against the rate-limited fake Discord, on PostgreSQL.

Story 35 at scale: every student is active in ``curso``, linked, in the guild and holding
R_course; the rules then add R_alumni to the product. ``--grants`` of the students (default
2,000 of 10,000, to keep a run near a minute on a shared 2-core machine; ``--grants 10000`` is
the full story, about 200 s) do not hold it yet (the rest were given it already). The run is
``run_reconcile(mode="all")`` — List Guild Members in pages of 1,000, the diff, one RECONCILE
event per student — and the events' steps run through the pipeline on ``--threads`` worker
threads (``process_event``, as ``engine worker`` does), each role grant a Discord PUT.

The fake Discord runs in a process of its own and serves Discord's documented global limit
(50 requests/s) and per-route windows (``--route-limit`` per ``--route-window`` s; by default
the global limit binds). The minimum
the limits allow is (list pages + grants) / the binding rate; the target is 1.2x of it.

    TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/reconcile.py
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from queue import SimpleQueue
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
from sqlalchemy import insert, select  # noqa: E402

from connectors.discord import DiscordConnector  # noqa: E402
from engine.db.migrate import upgrade  # noqa: E402
from engine.db.models import ClassEnrollment, CourseClass, Event, Grant, Membership, Student  # noqa: E402
from engine.db.session import dispose_all, session_factory  # noqa: E402
from engine.pipeline.processing import process_event  # noqa: E402
from engine.pipeline.queue import NoQueue  # noqa: E402
from engine.pipeline.rules_repository import RulesRepository  # noqa: E402
from engine.pipeline.runtime import Runtime, build_connectors  # noqa: E402
from engine.reconcile import RECONCILE_EVENT, run_reconcile  # noqa: E402
from engine.settings import Settings  # noqa: E402
from tests.fakes.discord_app import COURSE_ROLE_ID, GUILD_ID, create_app  # noqa: E402
from tests.fakes.server import free_port  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ALUMNI_ROLE = "1180000000000000077"
FIRST_USER = 400000000000000000
FAKE_TOKEN = "bench-token"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=10_000)
    parser.add_argument("--grants", type=int, default=2_000, help="students missing the new role (<= --students)")
    parser.add_argument("--global-rate", type=float, default=50.0, help="req/s, fake and client")
    parser.add_argument("--route-limit", type=int, default=60)
    parser.add_argument("--route-window", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=4, help="worker threads running the steps")
    parser.add_argument(
        "--database-url", default=os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    args = parser.parse_args(argv)
    grants = min(args.grants, args.students)
    logging.basicConfig(level=logging.ERROR)

    import psycopg

    name = f"engine_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.database_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = urlunsplit(urlsplit(args.database_url)._replace(path=f"/{name}"))
    rules_dir = Path(tempfile.mkdtemp()) / "rules"
    try:
        return _run(args, grants, url, rules_dir)
    finally:
        dispose_all()
        shutil.rmtree(rules_dir.parent, ignore_errors=True)
        with psycopg.connect(args.database_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _run(args, grants: int, url: str, rules_dir: Path) -> int:
    shutil.copytree(REPO / "rules", rules_dir)
    curso = rules_dir / "products" / "curso.yaml"
    curso.write_text(curso.read_text().replace(f'["{COURSE_ROLE_ID}"]', f'["{COURSE_ROLE_ID}", "{ALUMNI_ROLE}"]'))
    settings = Settings(ENGINE_ENV="test", database_url=url, rules_dir=rules_dir)
    upgrade(settings)
    sessions = session_factory(settings)

    _seed(sessions, args.students, grants)

    route_rate = args.route_limit / args.route_window
    rate = min(args.global_rate, route_rate)
    pages = args.students // 1000 + 1
    minimum = (pages + grants) / rate

    with _fake_discord(args, grants) as base:
        discord = DiscordConnector(FAKE_TOKEN, GUILD_ID, api_base=f"{base}/api/v10", global_rate=args.global_rate)
        registry, _ = build_connectors(settings)  # ManyChat's flag is off: tags are not compared
        registry.update({action: discord for action in discord.actions})
        queue: SimpleQueue[int | None] = SimpleQueue()
        rt = Runtime(
            settings=settings,
            sessions=sessions,
            rules=RulesRepository(rules_dir),
            connectors=registry,
            queue=_ThreadQueue(queue),
        )

        # The worker threads wait for events as `engine worker` does: each batch of students
        # queued by the run is picked up while the next is being written.
        threads = [threading.Thread(target=_worker, args=(rt, queue)) for _ in range(args.threads)]
        for thread in threads:
            thread.start()
        started = time.monotonic()
        run_id, report, applied = run_reconcile(rt, mode="all", trigger="bench")
        diffed = time.monotonic() - started
        for _ in threads:
            queue.put(None)
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        discord.close()
        fake = httpx.get(f"{base}/_fake/state", timeout=30).json()

    with sessions() as session:
        statuses = session.scalars(select(Event.status).where(Event.type == RECONCILE_EVENT)).all()
    holding = sum(1 for roles in fake["members"].values() if ALUMNI_ROLE in roles)
    max_429 = max(fake["rate_limited_by_window"].values(), default=0)
    print(f"students           {args.students} ({grants} missing R_alumni; --grants scales the writes)")
    print(f"diff               {len(report.diff.grants)} grant(s), {len(report.diff.revokes)} revocation(s)")
    print(f"limits             global {args.global_rate:g}/s, route {args.route_limit}/{args.route_window:g}s")
    print(f"discord calls      {fake['requests']} ({pages} List Guild Members page(s) + {grants} role PUT(s))")
    print(f"read, diff, queue  {diffed:.2f} s (run {run_id}; the workers start on the first batch)")
    print(f"elapsed            {elapsed:.2f} s (until every RECONCILE event is processed)")
    print(f"theoretical min    {minimum:.2f} s ((pages + grants) / {rate:g} per s)")
    print(f"ratio              {elapsed / minimum:.3f} (target <= 1.2)")
    print(f"machine load       {' '.join(f'{x:.1f}' for x in os.getloadavg())} (1/5/15 min, {os.cpu_count()} cores)")
    print(f"429s served        {fake['rate_limited']}; max in one bucket window {max_429}")
    print(
        f"state check        {holding} members hold R_alumni (expected {args.students}); events {len(statuses)}, "
        f"not processed {sum(1 for s in statuses if s != 'processed')}"
    )
    ok = holding == args.students and all(s == "processed" for s in statuses) and not applied.held
    return 0 if ok and elapsed / minimum <= 1.2 else 1


@contextmanager
def _fake_discord(args, grants: int) -> Iterator[str]:
    """The fake Discord in a process of its own (as Discord is not in the worker's), its guild seeded."""
    port = free_port()
    limits = (args.route_limit, args.route_window, int(args.global_rate))
    process = multiprocessing.get_context("spawn").Process(
        target=_serve_fake, args=(port, limits, args.students, grants), daemon=True
    )
    process.start()
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline or not process.is_alive():
                raise RuntimeError("the fake Discord did not start") from None
            time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.join(timeout=10)


def _serve_fake(port: int, limits: tuple[int, float, int], students: int, grants: int) -> None:
    import uvicorn

    route_limit, route_window, global_limit = limits
    app = create_app(route_limit=route_limit, route_window=route_window, global_limit=global_limit, token=FAKE_TOKEN)
    fake = app.state.fake
    fake.add_role(ALUMNI_ROLE, "Alumni", position=1)
    for i in range(students):
        fake.add_member(str(FIRST_USER + i), [COURSE_ROLE_ID] if i < grants else [COURSE_ROLE_ID, ALUMNI_ROLE])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")


def _seed(sessions, students: int, grants: int) -> None:
    """``students`` linked, active curso students holding R_course (and R_alumni but for ``grants``)."""
    with sessions.begin() as session:
        session.execute(insert(CourseClass), [{"key": "curso-2026", "name": "curso-2026"}])
        class_id = session.scalar(select(CourseClass.id))
        users = [str(FIRST_USER + i) for i in range(students)]
        session.execute(
            insert(Student), [{"email": f"s{i}@example.com", "discord_id": user} for i, user in enumerate(users)]
        )
        ids = dict(session.execute(select(Student.discord_id, Student.id)).all())
        session.execute(
            insert(Membership), [{"student_id": ids[u], "product_key": "curso", "state": "active"} for u in users]
        )
        memberships = dict(session.execute(select(Membership.student_id, Membership.id)).all())
        rows = []
        for i, user in enumerate(users):
            held = [COURSE_ROLE_ID] if i < grants else [COURSE_ROLE_ID, ALUMNI_ROLE]
            sid = ids[user]
            rows += [
                {"student_id": sid, "membership_id": memberships[sid], "kind": "discord_role", "resource": role}
                for role in held
            ]
            rows.append(
                {"student_id": sid, "membership_id": memberships[sid], "kind": "class", "resource": "curso-2026"}
            )
        session.execute(insert(Grant), rows)
        session.execute(insert(ClassEnrollment), [{"class_id": class_id, "student_id": ids[u]} for u in users])


class _ThreadQueue(NoQueue):
    """Events go to this process's worker threads; nothing else is queued (as the runtime's default)."""

    def __init__(self, events: SimpleQueue[int | None]) -> None:
        self.events = events

    def enqueue(self, event_id: int, *, urgent: bool = False) -> None:
        self.events.put(event_id)


def _worker(rt: Runtime, queue: SimpleQueue[int | None]) -> None:
    while (event_id := queue.get()) is not None:
        process_event(rt, event_id)


if __name__ == "__main__":
    sys.exit(main())
