"""Never stuck (issue 21): a fast burst of the repository's own payloads on PostgreSQL.

Two `engine worker` processes with four threads each; every payload of tests/data/hotmart-corpus/
and examples/hotmart/ posted by eight concurrent clients, in three rounds (three copies of the
corpus with their own buyers, transactions and envelope ids, so each buyer's events are spread
across threads and processes at once). The corpus's products are claimed by the shipped products,
so its events go through the whole lifecycle: codes, timers, transitions.

It must end the way one-at-a-time processing in creation order ends: every event final (none left
``received`` or ``processing``), no deadlock and no "database unavailable" in the workers' logs,
and for every buyer the same memberships, states, pending timers and open codes as a fourth copy
processed in-process, one event at a time, in creation order.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.conftest import REPO, RULES
from tests.e2e.processes import start_engine

CORPUS = sorted((REPO / "tests/data/hotmart-corpus").glob("*.json")) + sorted(
    (REPO / "examples/hotmart").glob("*.json")
)
ROUNDS = 3
CLIENTS = 8
FINAL_WITHIN = 60.0
OPEN = ("received", "processing", "retrying")
# The corpus's products, claimed by the shipped ones (a subscription and a one-time course).
CLAIMS = {"comunidade.yaml": [1355458, 4062912], "curso.yaml": [4713431, 5036092, 5485679, 1458881]}
_EMAIL = re.compile(r'"([A-Za-z0-9._%+-]+)@([A-Za-z0-9.-]+)"')
_TRANSACTION = re.compile(r'"(HP[0-9A-Z]+)"')


def _copy(body: bytes, tag: str) -> bytes:
    """The payload as bought by this copy's own buyers: e-mails, transactions and the envelope id."""
    text_ = _EMAIL.sub(lambda m: f'"{m[1]}+{tag}@{m[2]}"', body.decode())
    text_ = _TRANSACTION.sub(lambda m: f'"{m[1]}{tag.upper()}"', text_)
    payload = json.loads(text_)
    if isinstance(payload, dict) and "id" in payload:
        payload["id"] = f"{payload['id']}-{tag}"
    return json.dumps(payload).encode()


def _rules(tmp_path: Path) -> Path:
    rules = tmp_path / "rules"
    shutil.copytree(RULES, rules, ignore=shutil.ignore_patterns("tests"))
    for name, ids in CLAIMS.items():
        path = rules / "products" / name
        source = path.read_text()
        claimed = re.sub(
            r"hotmart: \[(\d+)\]",
            lambda m, ids=ids: f"hotmart: [{m[1]}, {', '.join(map(str, ids))}]",
            source,
        )
        assert claimed != source
        path.write_text(claimed)
    return rules


def _outcome(database, tag: str) -> dict[str, tuple]:
    """Per buyer of this copy (the e-mail without the tag): memberships and their states, pending
    timers, open codes; and the events still open."""
    marker = f"+{tag}@"
    with database.connect() as connection:
        memberships = connection.execute(
            text(
                "SELECT s.email, m.product_key, m.state FROM memberships m JOIN students s ON s.id = m.student_id"
                " WHERE s.email LIKE :like ORDER BY 1, 2"
            ),
            {"like": f"%{marker}%"},
        ).all()
        timers = connection.execute(
            text(
                "SELECT s.email, m.product_key, t.event_type FROM scheduled_events t"
                " JOIN memberships m ON m.id = t.membership_id JOIN students s ON s.id = m.student_id"
                " WHERE t.status = 'pending' AND s.email LIKE :like ORDER BY 1, 2, 3"
            ),
            {"like": f"%{marker}%"},
        ).all()
        codes = connection.execute(
            text(
                "SELECT s.email, count(*) FROM onboarding_tokens o JOIN students s ON s.id = o.student_id"
                " WHERE o.used_at IS NULL AND o.revoked_at IS NULL AND s.email LIKE :like GROUP BY 1"
            ),
            {"like": f"%{marker}%"},
        ).all()
    result: dict[str, tuple] = {}
    for email in {row[0] for row in memberships}:
        buyer = email.replace(marker, "@")
        result[buyer] = (
            tuple((p, s) for e, p, s in memberships if e == email),
            tuple((p, t) for e, p, t in timers if e == email),
            dict(codes).get(email, 0),
        )
    return result


def _database(url: str):
    from engine.db.session import engine_of, session_factory
    from engine.settings import Settings

    return engine_of(session_factory(Settings(ENGINE_ENV="test", database_url=url)))


def _open_events(database) -> list[tuple]:
    with database.connect() as connection:
        return connection.execute(
            text("SELECT id, type, status, email FROM events WHERE status = ANY(:open) ORDER BY id"),
            {"open": list(OPEN)},
        ).all()


def test_story_37_a_launch_burst_of_the_corpus_never_wedges(start_stack, make_harness, pg, tmp_path):
    """37. A launch burst on PostgreSQL. Two worker processes; every payload of the corpus three
    times (several events per buyer), posted at once: every event final within a minute, no
    worker log saying deadlock or database unavailable, and every buyer as one-at-a-time
    processing in creation order leaves them."""
    rules = _rules(tmp_path)
    bodies = [path.read_bytes() for path in CORPUS]
    stack = start_stack(worker=False, RULES_DIR=str(rules), DISCORD_ENABLED="false", MANYCHAT_ENABLED="false")
    workers = [
        start_engine(["worker", "--threads", "4"], env=stack.env, cwd=REPO, log=tmp_path / f"worker-{n}.log")
        for n in range(2)
    ]
    database = _database(pg)
    try:
        for worker in workers:
            worker.wait_for_output("Huey consumer started", timeout=60)
        rounds = [_copy(body, f"r{n}") for n in range(ROUNDS) for body in bodies]
        with ThreadPoolExecutor(CLIENTS) as clients:
            answers = list(clients.map(stack.post_webhook, rounds))
        assert {answer.status_code for answer in answers} == {200}
        with contextlib.suppress(AssertionError):  # the assertion below names the events left open
            stack.wait_for(lambda: not _open_events(database), timeout=FINAL_WITHIN, what="every event final")
        assert _open_events(database) == []

        for worker in workers:
            log = worker.log.read_text()
            assert "deadlock" not in log.lower()
            assert "database unavailable" not in log
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=30)

    # The same events, one at a time, in creation order, in this process.
    reference = make_harness(rules_dir=rules, hotmart_enabled=True)
    reference.clock.now = datetime.now(UTC)
    copies = {payload["id"]: payload for payload in (json.loads(_copy(body, "ref")) for body in bodies)}
    for payload in sorted(copies.values(), key=lambda p: p.get("creation_date") or 0):  # redeliveries once
        reference.deliver(payload)
    expected = _outcome(database, "ref")
    assert len(expected) >= 10  # the corpus makes students, not only attention
    for n in range(ROUNDS):
        assert _outcome(database, f"r{n}") == expected


@pytest.fixture(autouse=True)
def _claims_are_real():
    """The products claimed above exist in the corpus (a renamed fixture would test nothing)."""
    found = {json.loads(path.read_bytes()).get("data", {}).get("product", {}).get("id") for path in CORPUS}
    assert {id_ for ids in CLAIMS.values() for id_ in ids} <= found
