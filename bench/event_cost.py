"""What each event costs the database: an empty database against one holding a year of history.

In process, no HTTP: webhooks are stored as the API stores them (``store_hotmart``), links go
through the bot's ``LinkService``, timers through the sweep's ``fire_due_timers``, and every
event through the worker's ``process_event`` with recording connectors (every Discord and
ManyChat step succeeds at once, so only the database's part is left). A SQLAlchemy
``before/after_cursor_execute`` listener times every statement and files it under the input
that caused it. Each round is, for new students:

* an abandoned cart (a lead), a first purchase (``curso``), the student's ``/registrar`` (the
  bot's transaction) and the ``DISCORD_LINKED`` it stores, a refund;
* a first purchase of the subscription (``comunidade``), its link, a renewal;
* a first purchase whose ``ONBOARDING_REMINDER`` is made due: the sweep fires it and the
  worker runs it;

then once: the rest of the periodic sweep (held events, stuck events, rules waiting, webhook
silence, alerts), ``/metrics``' collector, ``/healthz``' checks and ``engine status``' queries.

Both databases get the same rounds, interleaved (a machine busy with other work slows both alike);
the first ``--warmup`` rounds are not counted. It prints,
per input, the median database time and statements, the ratio prefilled/empty, the index
entries read per event (``pg_stat_user_indexes``: the issue's measure), the statements whose
time grows most with the history, and ``EXPLAIN (ANALYZE, BUFFERS)`` of the slowest.

    .venv/bin/python bench/event_cost.py [--rounds 12] [--students 2000] [--explain 6]
    .venv/bin/python bench/event_cost.py --prefilled-dsn postgresql://.../engine_bench_x   # reuse a filled copy

Needs PostgreSQL on 127.0.0.1:5432 (``bash .ci/services``).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
import uuid
from collections import defaultdict
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

EXAMPLES = REPO / "examples" / "hotmart"
# Inputs of one round, in the order they run.
EVENTS = ("cart", "purchase", "link (bot)", "DISCORD_LINKED", "refund", "renewal", "fire_due_timers", "timer")
PERIODIC = ("sweep", "metrics", "healthz", "engine status")
HOTTOK = "bench-hottok"


# --- statement capture ---------------------------------------------------------------------------


@dataclass
class Statement:
    label: str
    sql: str
    params: Any
    many: bool
    seconds: float


@dataclass
class Capture:
    """Every statement any engine of this process runs, filed under the current label."""

    label: str | None = None
    statements: list[Statement] = field(default_factory=list)

    def install(self) -> None:
        from sqlalchemy import Engine, event

        def before(conn, cursor, statement, parameters, context, executemany):
            conn.info.setdefault("bench_started", []).append(time.perf_counter())

        def after(conn, cursor, statement, parameters, context, executemany):
            seconds = time.perf_counter() - conn.info["bench_started"].pop()
            if self.label is not None:
                self.statements.append(Statement(self.label, statement, parameters, executemany, seconds))

        event.listen(Engine, "before_cursor_execute", before)
        event.listen(Engine, "after_cursor_execute", after)

    @contextmanager
    def under(self, label: str):
        before, self.label = self.label, label
        try:
            yield
        finally:
            self.label = before


# --- one database's run --------------------------------------------------------------------------


class Bench:
    """A runtime on one database and the rounds run against it."""

    def __init__(self, dsn: str, capture: Capture):
        from connectors.base import RecordingConnector
        from engine.onboarding.linking import LinkService
        from engine.pipeline.queue import MemoryQueue
        from engine.pipeline.runtime import build_runtime
        from engine.rules.actions import DISCORD, MANYCHAT, run_by
        from engine.settings import Settings

        self.dsn, self.capture = dsn, capture
        self.settings = Settings(
            ENGINE_ENV="test",
            database_url=dsn,
            rules_dir=REPO / "rules",
            hotmart_hottok=HOTTOK,
            admin_api_token="bench-admin",
        )
        queue = MemoryQueue()
        self.queued: list[int] = queue.events
        self.rt = build_runtime(self.settings, queue=queue)
        for name, actions in (("discord", run_by(DISCORD)), ("manychat", run_by(MANYCHAT))):
            recorder = RecordingConnector(name, actions)
            for action in actions:
                self.rt.connectors[action] = recorder
        self.links = LinkService(self.rt.sessions, self.rt.rules, self.queued.append)
        self.tag = uuid.uuid4().hex[:6]
        self.serial = 0

    # inputs ------------------------------------------------------------------------------------

    def payload(self, name: str, email: str, **purchase: Any) -> dict:
        body = copy.deepcopy(json.loads((EXAMPLES / f"{name}.json").read_text()))
        self.serial += 1
        body["id"] = f"bench-{self.tag}-{self.serial}"
        body["creation_date"] = int(time.time() * 1000) - 1000
        data = body["data"]
        for holder in ("buyer", "subscriber", "user"):
            if holder in data:
                data[holder]["email"] = email
        for key, value in purchase.items():
            data.setdefault("purchase", {})[key] = value
        return body

    def deliver(self, label: str, payload: dict) -> int:
        """Store as the API does (not counted), then process as the worker does (counted). Stored as
        arrived a settle window ago (ORDER_SETTLE_SECONDS): the worker checks it has settled."""
        from engine.db.models import utcnow
        from engine.pipeline.intake import store_webhook
        from engine.sources.hotmart import SOURCE as HOTMART

        arrived = utcnow() - timedelta(seconds=self.settings.order_settle_seconds + 1)
        with self.rt.sessions.begin() as session:
            stored = store_webhook(
                HOTMART,
                session,
                json.dumps(payload).encode(),
                {"content-type": "application/json"},
                held=False,
                received_at=arrived,
            )
        return self.process(label, stored.event_id)

    def process(self, label: str, event_id: int) -> int:
        from engine.pipeline.processing import process_event

        with self.capture.under(label):
            status = process_event(self.rt, event_id)
        if status not in ("processed", "ignored"):
            raise SystemExit(f"{label}: event {event_id} ended {status}")
        return event_id

    def link(self, email: str, discord_id: str) -> None:
        from sqlalchemy import select

        from engine.db.models import OnboardingToken, Student

        with self.rt.sessions() as session:
            code = session.scalar(
                select(OnboardingToken.code)
                .join(Student, Student.id == OnboardingToken.student_id)
                .where(Student.email == email, OnboardingToken.used_at.is_(None), OnboardingToken.revoked_at.is_(None))
                .order_by(OnboardingToken.id.desc())
                .limit(1)
            )
        self.queued.clear()
        with self.capture.under("link (bot)"):
            outcome = self.links.link(discord_id, code)
        if not outcome.linked:
            raise SystemExit(f"link of {email}: {outcome.outcome}")
        for event_id in self.queued:
            self.process("DISCORD_LINKED", event_id)
        self.queued.clear()

    def round(self, number: int) -> None:
        from engine.pipeline.sweep import fire_due_timers

        base = f"bench{self.tag}r{number}"
        discord = 700000000000000000 + int(self.tag, 16) * 1000 + number * 10
        # A lead's cart, the purchase, the link, the refund.
        ana = f"{base}.ana@example.com"
        self.deliver("cart", self.payload("purchase_out_of_shopping_cart", f"{base}.lead@example.com"))
        tx = f"HPB{self.tag}{number:05d}"
        self.deliver("purchase", self.payload("purchase_approved", ana, transaction=tx))
        self.link(ana, str(discord + 1))
        self.deliver("refund", self.payload("purchase_refunded", ana, transaction=tx))
        # The subscription: purchase, link, renewal.
        bia = f"{base}.bia@example.com"
        sub = f"HPS{self.tag}{number:05d}"
        self.deliver("purchase", self.payload("purchase_approved_subscription_first", bia, transaction=sub))
        self.link(bia, str(discord + 2))
        self.deliver("renewal", self.payload("purchase_approved_renewal", bia, transaction=sub, recurrence_number=2))
        # A purchase whose onboarding reminder comes due.
        caio = f"{base}.caio@example.com"
        self.deliver("purchase", self.payload("purchase_approved", caio, transaction=f"HPC{self.tag}{number:05d}"))
        with psycopg.connect(self.dsn, autocommit=True) as conn:  # by primary keys: no scan counted
            (student,) = conn.execute("SELECT id FROM students WHERE email = %s", (caio,)).fetchone()
            (membership,) = conn.execute(
                "SELECT id FROM memberships WHERE student_id = %s AND product_key = 'curso'", (student,)
            ).fetchone()
            conn.execute(
                "UPDATE scheduled_events SET due_at = now() - interval '1 second' WHERE membership_id = %s "
                "AND event_type = 'ONBOARDING_REMINDER' AND status = 'pending'",
                (membership,),
            )
        self.queued.clear()
        with self.capture.under("fire_due_timers"):
            fired = fire_due_timers(self.rt)
        mine = self._events_of(caio)
        for event_id in fired:
            if event_id in mine:
                self.process("timer", event_id)
        self.queued.clear()

    def _events_of(self, email: str) -> set[int]:
        from sqlalchemy import select

        from engine.db.models import Event

        with self.rt.sessions() as session:
            return set(session.scalars(select(Event.id).where(Event.email == email)))

    def periodic(self) -> None:
        """What runs every TIMER_POLL_SECONDS (the sweep) and at every scrape or healthcheck."""
        from engine.metrics import EngineCollector
        from engine.pipeline import sweep
        from engine.pipeline.worker_heartbeat import beat
        from engine.service import health

        with self.rt.sessions.begin() as session:
            beat(session, "worker:bench", started_at=self.rt.now(), rules_version=self.rt.rules.version)
        with self.capture.under("sweep"):
            sweep._sweep(self.rt)  # the periodic sweep's work (its fire_due_timers included: none due)
        self.queued.clear()
        with self.capture.under("metrics"):
            list(EngineCollector(self.rt, queue_depth=None).collect())
        with self.capture.under("healthz"):  # engine.api.app's checks
            health.check_database_writable(self.rt.sessions)
            health.check_worker_heartbeat(self.settings, sessions=self.rt.sessions, name="worker:bench")
            if hasattr(health, "stuck_report"):
                health.stuck_report(self.rt.sessions, self.settings)
        with self.capture.under("engine status"):
            _engine_status(self.rt)

    def close(self) -> None:
        self.rt.db.dispose()


def _engine_status(rt) -> None:
    """``engine status``' database part (engine/service/status.py), on the bench's engine."""
    from engine.service.status import event_backlog

    with rt.sessions() as session:
        event_backlog(session)


# --- the database's own counters -----------------------------------------------------------------


def index_reads(dsn: str) -> dict[str, tuple[int, int]]:
    """Index name -> (scans, entries read) so far."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        rows = conn.execute("SELECT indexrelname, idx_scan, idx_tup_read FROM pg_stat_user_indexes").fetchall()
        tables = conn.execute("SELECT relname, seq_scan, seq_tup_read FROM pg_stat_user_tables").fetchall()
    found = {name: (scans, read) for name, scans, read in rows}
    found.update({f"seq scan {name}": (scans, read) for name, scans, read in tables})
    return found


@dataclass
class Result:
    label: str
    db_ms: dict[str, list[float]]
    statements: dict[str, list[int]]
    by_sql: dict[str, list[float]]
    samples: dict[str, Statement]
    event_reads: dict[str, tuple[int, int]]
    periodic_reads: dict[str, tuple[int, int]]
    events: int
    rounds: int
    buffers: dict[str, float]  # input -> shared buffers its statements touch, per occurrence
    statement_buffers: dict[str, tuple[int, str]]  # label + sql -> (buffers, the plan's scans)


# An input that runs several times in a round counts once per time.
OCCURRENCES = {"purchase": 3, "link (bot)": 2, "DISCORD_LINKED": 2}


def _delta(after: dict, before: dict) -> dict[str, tuple[int, int]]:
    return {
        name: (value[0] - before.get(name, (0, 0))[0], value[1] - before.get(name, (0, 0))[1])
        for name, value in after.items()
    }


def run(databases: dict[str, str], rounds: int, warmup: int) -> dict[str, Result]:
    """The same rounds on each database, interleaved (round 1 on each, then round 2...; the order
    alternating), so a machine busy with other work slows both alike."""
    capture = Capture()
    capture.install()
    benches = {label: Bench(dsn, capture) for label, dsn in databases.items()}
    print(f"{warmup} warm-up round(s), {rounds} measured, on {', '.join(databases)}", file=sys.stderr, flush=True)

    def close_all() -> dict[str, dict]:
        for bench in benches.values():
            bench.close()  # ends the backends: their statistics reach the counters
        time.sleep(0.5)
        return {label: index_reads(dsn) for label, dsn in databases.items()}

    def each(number: int):
        labels = list(benches)
        return labels if number % 2 == 0 else labels[::-1]

    for number in range(warmup):
        for label in each(number):
            benches[label].round(number)
            benches[label].periodic()
    start = close_all()
    per_round: dict[str, list[list[Statement]]] = {label: [] for label in benches}
    for number in range(warmup, warmup + rounds):
        for label in each(number):
            capture.statements.clear()
            benches[label].round(number)
            per_round[label].append(list(capture.statements))
    middle = close_all()
    for index in range(rounds):
        for label in each(index):
            capture.statements.clear()
            benches[label].periodic()
            per_round[label][index] += capture.statements
    end = close_all()
    events = rounds * sum(OCCURRENCES.get(name, 1) for name in EVENTS if name != "fire_due_timers")
    results = {}
    for label, dsn in databases.items():
        db_ms: dict[str, list[float]] = defaultdict(list)
        counts: dict[str, list[int]] = defaultdict(list)
        by_sql: dict[str, list[float]] = defaultdict(list)
        samples: dict[str, Statement] = {}
        for statements in per_round[label]:
            totals: dict[str, list[float]] = defaultdict(list)
            for st in statements:
                totals[st.label].append(st.seconds)
                key = f"{st.label}\t{st.sql}"
                by_sql[key].append(st.seconds)
                samples[key] = st
            for name, seconds in totals.items():
                times = OCCURRENCES.get(name, 1)
                db_ms[name].append(sum(seconds) * 1000 / times)
                counts[name].append(round(len(seconds) / times))
        buffers, statement_buffers = _buffers(dsn, per_round[label][-1])
        results[label] = Result(
            label,
            db_ms,
            counts,
            by_sql,
            samples,
            _delta(middle[label], start[label]),
            _delta(end[label], middle[label]),
            events,
            rounds,
            buffers,
            statement_buffers,
        )
    return results


def _buffers(dsn: str, statements: list[Statement]) -> tuple[dict[str, float], dict[str, tuple[int, str]]]:
    """Shared buffers each statement of one round touches (EXPLAIN ANALYZE, rolled back), per input."""
    per_input: dict[str, float] = defaultdict(float)
    per_statement: dict[str, tuple[int, str]] = {}
    with psycopg.connect(dsn) as conn:  # one connection: its catalog caches warm, as a worker's are
        for st in statements:
            if _explainable(st):
                explain_json(conn, st)
        for st in statements:
            if not _explainable(st):
                continue
            plan = explain_json(conn, st)
            if plan is None:
                continue
            touched = plan.get("Shared Hit Blocks", 0) + plan.get("Shared Read Blocks", 0)
            per_input[st.label] += touched / OCCURRENCES.get(st.label, 1)
            key = f"{st.label}\t{st.sql}"
            if touched >= per_statement.get(key, (-1, ""))[0]:
                per_statement[key] = (touched, _scans(plan))
    return dict(per_input), per_statement


def _explainable(st: Statement) -> bool:
    head = st.sql.lstrip()[:12].upper()
    return (
        not st.many and "advisory" not in st.sql and head.startswith(("SELECT", "INSERT", "UPDATE", "DELETE", "WITH"))
    )


def _scans(plan: dict) -> str:
    """The plan's scans, e.g. 'Index Scan ix_events_email, Seq Scan action_runs'."""
    found = []

    def walk(node: dict) -> None:
        kind = node.get("Node Type", "")
        if "Scan" in kind:
            found.append(f"{kind} {node.get('Index Name') or node.get('Relation Name') or ''}".strip())
        for child in node.get("Plans", []):
            walk(child)

    walk(plan)
    return ", ".join(found)


# --- the report ----------------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report(empty: Result, full: Result, explain: int, full_dsn: str) -> None:
    per_round = sum(OCCURRENCES.get(name, 1) for name in EVENTS if name != "fire_due_timers")
    print(f"\n{full.rounds} rounds of {per_round} events (3 purchases, 2 links and their DISCORD_LINKED, a cart, a")
    print("refund, a renewal, a timer) on each database; the periodic work once a round.")
    print("\nPer input: median database time (the sum of its statements' execute time), statements, and the")
    print("shared buffers its statements touch (EXPLAIN ANALYZE of one round's statements), per occurrence")
    print(f"{'input':16} {'empty ms':>9} {'prefilled ms':>13} {'ratio':>6} {'statements':>11} {'buffers':>16}")
    totals = {"empty": 0.0, "full": 0.0, "statements": 0.0, "buf_e": 0.0, "buf_f": 0.0}
    for name in (*EVENTS, *PERIODIC):
        e, f = _median(empty.db_ms.get(name, [])), _median(full.db_ms.get(name, []))
        n_e, n_f = _median(empty.statements.get(name, [])), _median(full.statements.get(name, []))
        b_e, b_f = empty.buffers.get(name, 0.0), full.buffers.get(name, 0.0)
        print(
            f"{name:16} {e:9.2f} {f:13.2f} {f / e if e else float('nan'):6.2f} {n_e:5.0f} / {n_f:<5.0f}"
            f" {b_e:7.0f} / {b_f:<7.0f}"
        )
        if name in EVENTS:
            weight = OCCURRENCES.get(name, 1)
            totals["empty"] += e * weight
            totals["full"] += f * weight
            totals["statements"] += n_e * weight
            totals["buf_e"] += b_e * weight
            totals["buf_f"] += b_f * weight
    print(
        f"{'per event':16} {totals['empty'] / per_round:9.2f} {totals['full'] / per_round:13.2f} "
        f"{totals['full'] / totals['empty']:6.2f} {totals['statements'] / per_round:11.1f}"
        f" {totals['buf_e'] / per_round:7.0f} / {totals['buf_f'] / per_round:<7.0f}"
    )
    print("(per event: the round's total over its events; the sweep's fire_due_timers counted with the timer)")

    for title, attr, divisor in (
        ("Index entries read per event (pg_stat_user_indexes; 'seq scan': rows read)", "event_reads", "events"),
        ("The periodic work, per run: index entries and rows read", "periodic_reads", "rounds"),
    ):
        print(f"\n{title}")
        print(f"{'index':44} {'empty':>10} {'prefilled':>12}")
        reads_e, reads_f = getattr(empty, attr), getattr(full, attr)
        names = sorted(set(reads_e) | set(reads_f), key=lambda n: -reads_f.get(n, (0, 0))[1])
        for name in names[:12]:
            e = reads_e.get(name, (0, 0))[1] / getattr(empty, divisor)
            f = reads_f.get(name, (0, 0))[1] / getattr(full, divisor)
            if e >= 0.5 or f >= 0.5:
                print(f"{name:44} {e:10.1f} {f:12.1f}")

    print("\nStatements touching more buffers with the history (empty -> prefilled, one execution; its scans)")
    grown = []
    for key, (touched, scans) in full.statement_buffers.items():
        before = empty.statement_buffers.get(key, (0, ""))[0]
        grown.append((touched - before, before, touched, scans, key))
    grown.sort(reverse=True)
    for extra, before, touched, scans, key in grown[:10]:
        if extra < 10:
            break
        label, sql = key.split("\t", 1)
        print(f"  {before:6} -> {touched:6} buffers [{label}] {_short(sql, 110)}\n{'':21}{scans}")

    print("\nStatements whose time grows most with the history (mean ms, empty -> prefilled)")
    growth = []
    for key, seconds in full.by_sql.items():
        base = empty.by_sql.get(key)
        mean_full = statistics.mean(seconds) * 1000
        mean_empty = statistics.mean(base) * 1000 if base else float("nan")
        growth.append((mean_full - (mean_empty if base else 0), mean_empty, mean_full, key))
    growth.sort(reverse=True)
    for _extra, mean_empty, mean_full, key in growth[:10]:
        label, sql = key.split("\t", 1)
        print(f"  {mean_empty:7.2f} -> {mean_full:7.2f} ms  [{label}] {_short(sql, 110)}")

    if explain:
        print(f"\nEXPLAIN (ANALYZE, BUFFERS) of the {explain} slowest statements on the prefilled database")
        slowest = sorted(full.by_sql.items(), key=lambda item: -statistics.mean(item[1]))
        shown = 0
        for key, seconds in slowest:
            sample = full.samples[key]
            if not _explainable(sample):
                continue
            print(f"\n-- [{sample.label}] mean {statistics.mean(seconds) * 1000:.2f} ms over {len(seconds)} run(s)")
            print(_short(sample.sql, 400))
            for line in explain_analyze(full_dsn, sample):
                print("   " + line)
            shown += 1
            if shown >= explain:
                break


def _short(sql: str, width: int = 150) -> str:
    text = " ".join(sql.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def explain_json(conn: psycopg.Connection, statement: Statement) -> dict | None:
    """The executed plan's top node (its buffers include its children's); a write is rolled back."""
    try:
        row = conn.execute(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement.sql, statement.params or None
        ).fetchone()
    except psycopg.Error:
        return None
    finally:
        conn.rollback()
    return row[0][0]["Plan"]


def explain_analyze(dsn: str, statement: Statement) -> list[str]:
    """The plan as run now with the captured parameters; a write is rolled back."""
    with psycopg.connect(dsn) as conn:
        try:
            rows = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement.sql, statement.params or None).fetchall()
        except psycopg.Error as exc:
            return [f"(could not explain: {type(exc).__name__}: {str(exc).splitlines()[0]})"]
        finally:
            conn.rollback()
    return [row[0] for row in rows]


def throwaway(stack: ExitStack, *, template: str | None = None, revision: str = "head", keep: bool = False) -> str:
    """A new database (a copy of ``template``'s database, if given) migrated to ``revision``;
    dropped when ``stack`` closes unless ``keep``."""
    from bench.stack import ADMIN_DSN
    from engine.db.migrate import upgrade
    from engine.db.session import dispose_all
    from engine.settings import Settings

    name = f"engine_cost_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        source = f' TEMPLATE "{template.rsplit("/", 1)[1]}"' if template else ""
        conn.execute(f'CREATE DATABASE "{name}"{source}')
    dsn = ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"

    def drop() -> None:
        dispose_all()
        if keep:
            print(f"kept database {name}", file=sys.stderr)
            return
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    stack.callback(drop)
    upgrade(Settings(ENGINE_ENV="test", database_url=dsn), revision)
    return dsn


def add_backlog(dsn: str, events: int) -> None:
    """A queue that fell behind: ``events`` open events of other students (half planned, with two
    steps done and two waiting, a quarter still ``received``, a quarter ``retrying``), written
    without vacuuming or analyzing, as a burst leaves them."""
    tag = uuid.uuid4().hex[:6]
    students = max(events // 2, 1)
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO students (email, name, created_at, updated_at) "
            "SELECT format('backlog.%%s.%%s@example.com', %(tag)s::text, g), 'Backlog', now(), now() "
            "FROM generate_series(1, %(n)s) g",
            {"tag": tag, "n": students},
        )
        conn.execute(
            "INSERT INTO memberships (student_id, product_key, state, state_changed_at, created_at, updated_at) "
            "SELECT id, 'curso', 'pending_onboarding', now(), now(), now() FROM students WHERE email LIKE %(like)s",
            {"like": f"backlog.{tag}.%"},
        )
        conn.execute(
            "INSERT INTO events (source, type, dedupe_key, payload, received_at, occurred_at, status, email, "
            "student_id, product_key, correlation_id, failures) "
            "SELECT 'hotmart', 'PURCHASE_APPROVED', format('backlog:%%s:%%s:%%s', %(tag)s::text, m.id, k), "
            "'{}'::jsonb, "
            "now() - make_interval(secs => k), now() - make_interval(secs => k + 1), "
            "(ARRAY['processing', 'received', 'retrying', 'processing'])[1 + (m.id + k) %% 4], s.email, s.id, "
            "'curso', md5(m.id::text || k), 0 "
            "FROM memberships m JOIN students s ON s.id = m.student_id, generate_series(1, 2) k "
            "WHERE s.email LIKE %(like)s",
            {"tag": tag, "like": f"backlog.{tag}.%"},
        )
        conn.execute(
            "INSERT INTO action_runs (event_id, membership_id, step_index, action, params, status, attempts, "
            "created_at, retry_at) "
            "SELECT e.id, m.id, i, (ARRAY['issue_token', 'add_tag', 'set_field', 'trigger_flow'])[i + 1], '{}'::jsonb, "
            "CASE WHEN i < 2 THEN 'done' WHEN e.status = 'retrying' AND i = 2 THEN 'retrying' ELSE 'pending' END, "
            "CASE WHEN i < 2 THEN 1 ELSE 0 END, now(), "
            "CASE WHEN e.status = 'retrying' AND i = 2 THEN now() + interval '30 seconds' END "
            "FROM events e JOIN memberships m ON m.student_id = e.student_id, generate_series(0, 3) i "
            "WHERE e.dedupe_key LIKE %(key)s AND e.status <> 'received'",
            {"key": f"backlog:{tag}:%"},
        )
        conn.commit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=12, help="measured rounds per database")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--students", type=int, default=2000, help="the prefilled course's students")
    parser.add_argument("--explain", type=int, default=6, help="EXPLAIN (ANALYZE, BUFFERS) of this many statements")
    parser.add_argument("--prefilled-dsn", help="a database bench/history.py filled (--keep): a copy is measured")
    parser.add_argument("--revision", default="head", help="migrate the databases to this revision (e.g. 0009)")
    parser.add_argument(
        "--backlog", type=int, default=0, help="open events of other students (a queue behind) before measuring"
    )
    parser.add_argument(
        "--analyze",
        action="store_true",
        help="ANALYZE after adding the backlog (what autovacuum does within a minute or two with migration 0010's "
        "thresholds; without it, the plans are made on statistics that know no open event)",
    )
    parser.add_argument(
        "--compare-revision",
        help="also measure databases at this (earlier) revision, interleaved with the others: before and after",
    )
    parser.add_argument("--keep", action="store_true", help="keep the prefilled database it makes")
    args = parser.parse_args()
    from bench.history import fill

    revisions = [args.revision, *([args.compare_revision] if args.compare_revision else [])]
    with ExitStack() as stack:
        source = args.prefilled_dsn
        if source is None:  # filled at the earliest revision measured; each revision gets a copy
            source = throwaway(stack, revision=revisions[-1], keep=args.keep)
            started = time.perf_counter()
            counts = fill(source, students=args.students)
            print(
                f"prefilled: {counts['events']} events, {counts['action_runs']} steps, "
                f"{counts['students']} students ({time.perf_counter() - started:.0f} s)",
                file=sys.stderr,
            )
        databases: dict[str, str] = {}
        for revision in revisions:
            databases[f"empty {revision}"] = throwaway(stack, revision=revision)
            databases[f"prefilled {revision}"] = throwaway(stack, template=source, revision=revision)
        if args.backlog:
            for dsn in databases.values():
                add_backlog(dsn, args.backlog)
                if args.analyze:
                    with psycopg.connect(dsn, autocommit=True) as conn:
                        conn.execute("ANALYZE")
        results = run(databases, args.rounds, args.warmup)
        analyzed = " (analyzed)" if args.analyze else " (not analyzed since)" if args.backlog else ""
        for revision in reversed(revisions):
            print(f"\n======== databases at revision {revision}; backlog: {args.backlog} open events of other "
                  f"students{analyzed}")  # fmt: skip
            report(
                results[f"empty {revision}"],
                results[f"prefilled {revision}"],
                args.explain if revision == args.revision else 0,
                databases[f"prefilled {revision}"],
            )
        if len(revisions) > 1:
            summary(results, revisions)


def summary(results: dict[str, Result], revisions: list[str]) -> None:
    """Per event (the round's events) and per periodic run, at each revision."""
    per_round = sum(OCCURRENCES.get(name, 1) for name in EVENTS if name != "fire_due_timers")

    def per_event(result: Result, attr: str) -> float:
        values = getattr(result, attr)
        total = 0.0
        for name in EVENTS:
            if name in values:
                value = _median(values[name]) if isinstance(values[name], list) else values[name]
                total += value * OCCURRENCES.get(name, 1)
        return total / per_round

    print("\n======== summary: median database ms per event (buffers its statements touch), empty -> prefilled")
    for revision in reversed(revisions):
        e, f = results[f"empty {revision}"], results[f"prefilled {revision}"]
        te, tf = per_event(e, "db_ms"), per_event(f, "db_ms")
        be, bf = per_event(e, "buffers"), per_event(f, "buffers")
        periodic = ", ".join(
            f"{name} {_median(e.db_ms.get(name, [])):.1f} -> {_median(f.db_ms.get(name, [])):.1f} ms"
            for name in PERIODIC
        )
        print(
            f"revision {revision:6} {te:7.2f} -> {tf:7.2f} ms ({tf / te:.2f}x); "
            f"buffers {be:.0f} -> {bf:.0f} ({bf / be:.2f}x)"
        )
        print(f"{'':16}{periodic}")


if __name__ == "__main__":
    main()
