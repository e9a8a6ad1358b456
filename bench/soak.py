"""A soak: a course's steady mix of events for minutes on end, against the production shape.

`engine serve` + ``--workers`` `engine worker` processes on PostgreSQL and Redis (a throwaway
database), against the fake Discord (50/s global, 50/s per route) and the fake ManyChat (10/s
per endpoint, sendFlow 20/s), both enforcing their limits. ``--rate`` events per second, sent
on an open-loop schedule (the k-th at start + k / rate, whatever the answers) for ``--minutes``,
mixed by ``--mix`` (per ``sum(mix)`` events; default per second at 20/s):

- 8 first purchases (PURCHASE_APPROVED of the course by a new buyer: code, tag, field, flow,
  timers);
- 6 links: a student whose purchase is final types the code as the bot's /registrar does
  (engine/onboarding/linking.py's LinkService: DISCORD_LINKED stored and queued with the urgent priority);
- 2 refunds (PURCHASE_REFUNDED of an earlier purchase: alternately a linked and an unlinked
  student);
- 3 abandoned carts (PURCHASE_OUT_OF_SHOPPING_CART of a new lead: ignored);
- 1 renewal (PURCHASE_APPROVED, recurrence_number > 1, of the subscription of a linked
  subscriber).

A warm-up before the first minute (not measured) makes the students the first links and
refunds need, and the subscribers the renewals need.

End to end, per kind: a webhook from its POST to all its steps final (done / skipped / failed)
and the event final; a link from the call to its add_role step done (``link``), and to all its
steps final (``link+``). Times come from the database's timestamps (one query per poll for
everything outstanding), so the poll interval does not add to them.

Every minute, one line: events sent, p50/p99 per kind (of what became final that minute), the
events not yet final and the Huey queue (waiting / scheduled, mean over the minute), the RSS of
the API and of each worker, the CPU of the database's backends, and the database time per event
(``pg_stat_database.active_time``, minus this script's own polls). At the end, a summary and a
verdict against each target. Exits 0 whatever the figures (it is a bench: it prints).

Targets (issue): link -> role p99 <= 1 s; each webhook kind's steps p99 <= ORDER_SETTLE_SECONDS
+ 1 s; queue depth, events not final and each process's RSS flat from minute 2 to the end:
the last minute's mean no more than max(10 %, an allowance) above minute 2's (allowance: one
second of events for the queue and the events not final, 20 MB for RSS; minute 1 is the
reference for runs under 3 minutes). With ``--history`` (a year of a 2,000-student course
first, bench/history.py), the database time per event within 1.5x an empty database's
(``--baseline-db-ms``: that figure from a run without ``--history``).

    .venv/bin/python bench/soak.py                       # 20/s for 10 minutes, 1 worker
    .venv/bin/python bench/soak.py --minutes 2
    .venv/bin/python bench/soak.py --history --minutes 30 --baseline-db-ms 4.2

Needs PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379 (`bash .ci/services`).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import logging
import math
import signal
import sys
import threading
import time
import uuid
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import psycopg  # noqa: E402

from bench.stack import (  # noqa: E402
    HOTTOK,
    REPO,
    QueueDepth,
    Workers,
    backend_cpu_seconds,
    bench_database,
    clear_queue,
    cpu_seconds,
    database_active_ms,
    engine_env,
    percentile,
    remote_enqueue,
    rss_mb,
    start_api,
    stop_process,
)
from engine.statuses import FINAL_EVENT_STATUSES, FINAL_RUN_STATUSES  # noqa: E402
from tests.fakes import discord_app, manychat_app  # noqa: E402
from tests.fakes.server import serve  # noqa: E402

KINDS = ("purchase", "link", "refund", "renewal", "cart")
WEBHOOK_KINDS = ("purchase", "refund", "renewal", "cart")
DEFAULT_MIX = "purchase=8,link=6,refund=2,cart=3,renewal=1"
COMMUNITY_ROLE = "1180000000000000002"  # rules/products/comunidade.yaml
DAY_MS = 86_400_000
RSS_ALLOWANCE_MB = 20.0
POLL_SECONDS = 0.2
SEND_THREADS = 16


def _example(name: str) -> dict:
    return json.loads((REPO / "examples/hotmart" / name).read_text())


TEMPLATES = {
    "purchase": _example("purchase_approved.json"),  # the course (one_time)
    "subscription": _example("purchase_approved_subscription_first.json"),  # recurrence_number 1
    "renewal": _example("purchase_approved_renewal.json"),
    "refund": _example("purchase_refunded.json"),
    "cart": _example("purchase_out_of_shopping_cart.json"),
}


@dataclass
class Buyer:
    i: int
    product: str  # "curso" | "comunidade"
    bought_ms: int = 0
    code: str | None = None
    recurrence: int = 1


@dataclass
class Item:
    """One event sent and not yet final."""

    kind: str
    buyer: Buyer | None
    started: float  # wall clock when the POST / the link began
    measured: bool  # False during the warm-up
    role_seen: bool = False


class Course:
    """This run's students and their Hotmart payloads (names unique to the run: a pre-filled
    history keeps its own)."""

    def __init__(self, run: str):
        self.run = run

    def email(self, i: int) -> str:
        return f"soak-{self.run}-{i}@example.com"

    def lead(self, j: int) -> str:
        return f"soak-lead-{self.run}-{j}@example.com"

    @staticmethod
    def discord_id(i: int) -> str:
        return str(1_650_000_000_000_000_000 + i)

    @staticmethod
    def whatsapp(i: int) -> str:
        return f"+55119{i:08d}"  # what checkout_phone_code 11 + checkout_phone 9NNNNNNNN become

    def transaction(self, buyer: Buyer) -> str:
        return f"HP-SOAK-{self.run}-{buyer.i}-{buyer.recurrence}"

    def _stamped(self, kind: str) -> tuple[dict, int]:
        payload = copy.deepcopy(TEMPLATES[kind])
        payload["id"] = str(uuid.uuid4())
        now = int(time.time() * 1000)
        payload["creation_date"] = now  # in sending order: no event is late by construction
        return payload, now

    def _buyer(self, payload: dict, buyer: Buyer) -> None:
        payload["data"]["buyer"]["email"] = self.email(buyer.i)
        payload["data"]["buyer"]["checkout_phone"] = f"9{buyer.i:08d}"
        payload["data"]["buyer"]["name"] = f"Aluno Soak {buyer.i}"
        payload["data"]["buyer"]["first_name"] = "Aluno"

    def purchase(self, buyer: Buyer) -> bytes:
        payload, now = self._stamped("purchase" if buyer.product == "curso" else "subscription")
        self._buyer(payload, buyer)
        buyer.bought_ms = now
        purchase = payload["data"]["purchase"]
        purchase.update(order_date=now - 5000, approved_date=now - 1000, transaction=self.transaction(buyer))
        if buyer.product != "curso":
            purchase["date_next_charge"] = now + 30 * DAY_MS
            payload["data"]["subscription"]["subscriber"]["code"] = f"SOAK{buyer.i}"
        return json.dumps(payload).encode()

    def renewal(self, buyer: Buyer) -> bytes:
        buyer.recurrence += 1
        payload, now = self._stamped("renewal")
        self._buyer(payload, buyer)
        purchase = payload["data"]["purchase"]
        purchase.update(
            order_date=now - 5000,
            approved_date=now - 1000,
            transaction=self.transaction(buyer),
            recurrence_number=buyer.recurrence,
            date_next_charge=now + 30 * DAY_MS,
        )
        payload["data"]["subscription"]["subscriber"]["code"] = f"SOAK{buyer.i}"
        return json.dumps(payload).encode()

    def refund(self, buyer: Buyer) -> bytes:
        payload, _ = self._stamped("refund")
        self._buyer(payload, buyer)
        payload["data"]["purchase"].update(
            order_date=buyer.bought_ms - 5000, approved_date=buyer.bought_ms - 1000, transaction=self.transaction(buyer)
        )
        return json.dumps(payload).encode()

    def cart(self, j: int) -> bytes:
        payload, _ = self._stamped("cart")
        payload["data"]["buyer"].update(email=self.lead(j), phone=f"1198{j:07d}", name=f"Lead {j}")
        return json.dumps(payload).encode()


class StandInAutovacuum:
    """What autovacuum does to the hot tables, for a server that runs with it off.

    PostgreSQL's autovacuum is on by default (a table is vacuumed past 50 dead rows + 20 % of its
    live ones), and migration 0010 gives the engine's hot tables 1,000 + 1 %. A server with
    ``autovacuum = off`` (this machine's) would let dead rows pile up for as long as the soak runs,
    which no production database does: this thread vacuums and analyzes a table when it crosses its
    threshold. Its time in the database counts as the script's own (not the engine's database time).
    """

    HOT = ("events", "action_runs", "scheduled_events", "grants")
    EVERY = 15.0  # seconds between checks (autovacuum_naptime is 60 s; its workers then take a while)

    def __init__(self, dsn: str, soak: Soak) -> None:
        self.dsn, self.soak, self.runs = dsn, soak, Counter()
        self.thread = threading.Thread(target=self._run, name="stand-in-autovacuum", daemon=True)

    @staticmethod
    def needed(dsn: str) -> bool:
        with psycopg.connect(dsn, autocommit=True) as conn:
            return conn.execute("SHOW autovacuum").fetchone()[0] == "off"

    def _run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            # Autovacuum's own pace (autovacuum_vacuum_cost_delay 2 ms, cost limit 200: PostgreSQL's
            # defaults): an unthrottled VACUUM of the year's action_runs indexes takes both cores for a
            # while, which autovacuum never does.
            conn.execute("SET vacuum_cost_delay = '2ms'")
            conn.execute("SET vacuum_cost_limit = 200")
            while not self.soak.stopping.wait(self.EVERY):
                tables = conn.execute("SELECT relname, n_dead_tup, n_live_tup FROM pg_stat_user_tables").fetchall()
                for table, dead, live in tables:
                    if dead > (1000 + 0.01 * live if table in self.HOT else 50 + 0.2 * live):
                        began = time.perf_counter()
                        conn.execute(f"VACUUM (ANALYZE) {table}")
                        with self.soak.lock:
                            self.soak.poll_seconds += time.perf_counter() - began
                        self.runs[table] += 1


def parse_mix(text: str) -> dict[str, int]:
    mix = dict.fromkeys(KINDS, 0)
    for part in text.split(","):
        name, _, count = part.partition("=")
        if name.strip() not in mix or not count.strip().isdigit():
            raise argparse.ArgumentTypeError(f"--mix: expected kind=count with kinds {', '.join(KINDS)}: {part!r}")
        mix[name.strip()] = int(count)
    if not sum(mix.values()):
        raise argparse.ArgumentTypeError("--mix: all counts are 0")
    return mix


def interleave(mix: dict[str, int]) -> list[str]:
    """One period of the mix, its kinds spread evenly (smooth weighted round robin)."""
    total = sum(mix.values())
    current = dict.fromkeys(mix, 0)
    order = []
    for _ in range(total):
        for kind, weight in mix.items():
            current[kind] += weight
        best = max(current, key=current.__getitem__)
        current[best] -= total
        order.append(best)
    return order


def index_manychat(fake) -> None:
    """The fake looks a contact up by scanning all of them; thousands of seeded buyers would make
    that scan the fake's cost. Look the seeded ones up in a dict (anything else as before)."""
    by_email = {sub.email.lower(): sub for sub in fake.subscribers.values() if sub.email}
    by_phone = {sub.whatsapp_phone: sub for sub in fake.subscribers.values() if sub.whatsapp_phone}
    scan = fake.find

    def find(*, email: str | None = None, phone: str | None = None):
        found = by_email.get(email.lower()) if email else by_phone.get(phone) if phone else None
        return found or scan(email=email, phone=phone)

    fake.find = find


# The poll: every outstanding event in one query.
POLL = """
SELECT e.id, e.status, e.processed_at,
       count(a.id) FILTER (WHERE a.status <> ALL(%(final_runs)s)) AS open_runs,
       count(a.id) FILTER (WHERE a.status = 'failed') AS failed_runs,
       max(a.finished_at) AS last_step,
       max(a.finished_at) FILTER (WHERE a.action = 'add_role' AND a.status = 'done') AS role_at,
       (SELECT t.code FROM onboarding_tokens t
         WHERE t.student_id = e.student_id AND t.used_at IS NULL AND t.revoked_at IS NULL
         ORDER BY t.id DESC LIMIT 1) AS code
  FROM events e LEFT JOIN action_runs a ON a.event_id = e.id
 WHERE e.id = ANY(%(ids)s)
 GROUP BY e.id
"""


@dataclass
class Minute:
    number: int
    sent: int
    latencies: dict[str, list[float]]
    open_mean: float
    queue_mean: float
    scheduled_mean: float
    queue_max: int
    rss_api: float
    rss_workers: list[float]
    pg_cpu: float | None  # share of one core
    pg_cpu_ms_per_event: float | None
    db_ms_per_event: float | None


@dataclass
class Soak:
    args: argparse.Namespace
    mix: dict[str, int]
    course: Course
    client: httpx.Client
    service: object  # engine.onboarding.linking.LinkService
    dsn: str
    pool: ThreadPoolExecutor
    queue_depth: QueueDepth
    api_pid: int
    workers: Workers

    lock: threading.Lock = field(default_factory=threading.Lock)
    outstanding: dict[int, Item] = field(default_factory=dict)
    bought: deque = field(default_factory=deque)  # course buyers with a code, neither linked nor refunded
    linked: deque = field(default_factory=deque)  # course buyers linked, not refunded
    subscribers: list = field(default_factory=list)  # warm-up: subscribers with a code
    renewers: list = field(default_factory=list)  # linked subscribers (renewals)
    next_buyer: int = 0
    next_lead: int = 0
    turns: Counter = field(default_factory=Counter)
    results: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in (*KINDS, "link+")})
    this_minute: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in (*KINDS, "link+")})
    sent: Counter = field(default_factory=Counter)  # by minute index (0 = first minute)
    sent_by_kind: Counter = field(default_factory=Counter)
    missed: Counter = field(default_factory=Counter)  # no student ready for a link / refund / renewal
    errors: Counter = field(default_factory=Counter)  # (kind, what)
    lateness: list[float] = field(default_factory=list)
    failed_steps: int = 0
    not_processed: Counter = field(default_factory=Counter)  # final statuses other than processed / ignored
    no_code: int = 0
    no_role: int = 0
    poll_seconds: float = 0.0  # this script's own time in the database (subtracted from active_time)
    minutes: list[Minute] = field(default_factory=list)
    start: float | None = None  # monotonic start of minute 1
    stopping: threading.Event = field(default_factory=threading.Event)

    # ------------------------------------------------------------------ sending

    def new_buyer(self, product: str) -> Buyer:
        with self.lock:
            self.next_buyer += 1
            return Buyer(self.next_buyer - 1, product)

    def _count(self, counter: Counter, key, n: int = 1) -> None:
        if n:
            with self.lock:
                counter[key] += n

    def send(self, kind: str, at: float, measured: bool, buyer: Buyer | None = None) -> None:
        """Runs on a send thread: one webhook or one link, at its scheduled time ``at``."""
        late = time.monotonic() - at
        try:
            if kind == "link":
                self._link(buyer, at, measured, late)
            else:
                self._webhook(kind, buyer, at, measured, late)
        except Exception as exc:  # noqa: BLE001 - counted and shown, the schedule goes on
            self._count(self.errors, (kind, type(exc).__name__))

    def _pick(self, kind: str) -> tuple[Buyer | None, bytes | None]:
        with self.lock:
            if kind == "purchase":
                buyer = Buyer(self.next_buyer, "curso")
                self.next_buyer += 1
            elif kind == "refund":  # alternately a linked and a not yet linked student
                pools = (self.linked, self.bought) if self.turns["refund"] % 2 == 0 else (self.bought, self.linked)
                self.turns["refund"] += 1
                buyer = next((pool.popleft() for pool in pools if pool), None)
            elif kind == "renewal":
                buyer = self.renewers[self.turns["renewal"] % len(self.renewers)] if self.renewers else None
                self.turns["renewal"] += 1
            else:  # cart: a new lead
                self.next_lead += 1
                return None, self.course.cart(self.next_lead)
        if buyer is None:
            return None, None
        body = {"purchase": self.course.purchase, "refund": self.course.refund, "renewal": self.course.renewal}[kind]
        return buyer, body(buyer)

    def _webhook(self, kind: str, buyer: Buyer | None, at: float, measured: bool, late: float) -> None:
        if buyer is not None:  # warm-up: a given buyer's purchase
            body = self.course.purchase(buyer)
        else:
            buyer, body = self._pick(kind)
            if body is None:
                self._count(self.missed, kind, measured)
                return
        started = time.time()
        response = self.client.post("/webhooks/hotmart", content=body, headers={"X-HOTMART-HOTTOK": HOTTOK})
        event_id = response.json().get("event_id") if response.status_code == 200 else None
        if event_id is None:
            self._count(self.errors, (kind, f"HTTP {response.status_code} {response.text[:60]}"))
            return
        self._sent(kind, event_id, Item(kind, buyer, started, measured), at, late)

    def _link(self, buyer: Buyer | None, at: float, measured: bool, late: float) -> None:
        if buyer is None:
            with self.lock:
                buyer = self.bought.popleft() if self.bought else None
            if buyer is None:
                self._count(self.missed, "link", measured)
                return
        started = time.time()
        outcome = self.service.link(self.course.discord_id(buyer.i), buyer.code)
        if outcome.event_id is None:
            self._count(self.errors, ("link", outcome.outcome))
            return
        self._sent("link", outcome.event_id, Item("link", buyer, started, measured), at, late)

    def _sent(self, kind: str, event_id: int, item: Item, at: float, late: float) -> None:
        with self.lock:
            self.outstanding[event_id] = item
            if item.measured:
                self.sent[int((at - self.start) // 60)] += 1
                self.sent_by_kind[kind] += 1
                self.lateness.append(late)

    def paced(self, kinds: list[tuple[str, Buyer | None]], rate: float, measured: bool, start: float) -> None:
        """Send ``kinds`` at ``rate`` from ``start`` (monotonic): open loop, each on a send thread."""
        for n, (kind, buyer) in enumerate(kinds):
            at = start + n / rate
            delay = at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.pool.submit(self.send, kind, at, measured, buyer)

    # ------------------------------------------------------------------ watching

    def poll(self, conn: psycopg.Connection) -> None:
        with self.lock:
            ids = list(self.outstanding)
        if not ids:
            return
        began = time.perf_counter()
        rows = conn.execute(
            POLL, {"ids": ids, "final_runs": [str(s) for s in FINAL_RUN_STATUSES]}, prepare=True
        ).fetchall()
        with self.lock:  # the stand-in autovacuum adds its time too
            self.poll_seconds += time.perf_counter() - began
        final = {str(s) for s in FINAL_EVENT_STATUSES}
        now = time.time()
        with self.lock:
            for event_id, status, processed_at, open_runs, failed_runs, last_step, role_at, code in rows:
                item = self.outstanding[event_id]
                if item.kind == "link" and role_at is not None and not item.role_seen:
                    item.role_seen = True
                    self._record("link", role_at.timestamp() - item.started, item)
                if status not in final or open_runs:
                    continue
                del self.outstanding[event_id]
                ends = [t.timestamp() for t in (processed_at, last_step) if t is not None]
                took = (max(ends) if ends else now) - item.started
                self._record("link+" if item.kind == "link" else item.kind, took, item)
                if item.measured:
                    self.failed_steps += failed_runs
                    if status not in ("processed", "ignored"):
                        self.not_processed[(item.kind, status)] += 1
                buyer = item.buyer
                if item.kind == "purchase":
                    buyer.code = code
                    if code is None:
                        self.no_code += 1
                    else:
                        (self.bought if buyer.product == "curso" else self.subscribers).append(buyer)
                elif item.kind == "link":
                    self.no_role += item.measured and not item.role_seen
                    (self.linked if buyer.product == "curso" else self.renewers).append(buyer)

    def _record(self, kind: str, seconds: float, item: Item) -> None:
        if item.measured:
            self.results[kind].append(seconds)
            self.this_minute[kind].append(seconds)

    def watch(self) -> None:
        """The poll thread: outstanding events, queue samples, one line a minute."""
        samples: list[tuple[int, int, int]] = []
        cpu_before: dict[int, float] = {}
        active_before = poll_before = 0.0
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self.stopping.is_set():
                began = time.monotonic()
                try:
                    self.poll(conn)
                    waiting, scheduled = self.queue_depth()
                except Exception as exc:  # noqa: BLE001 - shown; the next poll tries again
                    self._count(self.errors, ("poll", type(exc).__name__))
                    waiting = scheduled = 0
                if self.start is not None:
                    if not samples:  # minute 1 begins: the baselines
                        cpu_before = _quiet(lambda: backend_cpu_seconds(self.dsn), {})
                        active_before, poll_before = (
                            _quiet(lambda: database_active_ms(self.dsn), 0.0),
                            self.poll_seconds,
                        )
                    with self.lock:
                        samples.append((len(self.outstanding), waiting, scheduled))
                    number = len(self.minutes) + 1
                    if number <= self.args.minutes and time.monotonic() >= self.start + 60 * number:
                        cpu = _quiet(lambda: backend_cpu_seconds(self.dsn), None)
                        active = _quiet(lambda: database_active_ms(self.dsn), None)
                        self.minute(number, samples, cpu, cpu_before, active, active_before, poll_before)
                        samples = [samples[-1]]
                        cpu_before = cpu if cpu is not None else cpu_before
                        active_before, poll_before = active if active is not None else active_before, self.poll_seconds
                self.stopping.wait(max(0.0, POLL_SECONDS - (time.monotonic() - began)))

    def minute(self, number, samples, cpu, cpu_before, active, active_before, poll_before) -> None:
        with self.lock:
            latencies, self.this_minute = self.this_minute, {k: [] for k in (*KINDS, "link+")}
            sent = self.sent[number - 1]
        pg_cpu = None
        if cpu is not None:
            pg_cpu = sum(used - cpu_before.get(pid, 0.0) for pid, used in cpu.items()) / 60
        db_ms = None
        if active is not None and sent:
            db_ms = max(0.0, active - active_before - (self.poll_seconds - poll_before) * 1000) / sent
        row = Minute(
            number=number,
            sent=sent,
            latencies=latencies,
            open_mean=sum(s[0] for s in samples) / len(samples),
            queue_mean=sum(s[1] for s in samples) / len(samples),
            scheduled_mean=sum(s[2] for s in samples) / len(samples),
            queue_max=max(s[1] for s in samples),
            rss_api=rss_mb(self.api_pid, children=True),
            rss_workers=self.workers.rss_now_mb(),
            pg_cpu=pg_cpu,
            pg_cpu_ms_per_event=pg_cpu * 60_000 / sent if pg_cpu is not None and sent else None,
            db_ms_per_event=db_ms,
        )
        self.minutes.append(row)
        print(format_minute(row), flush=True)

    def wait_idle(self, timeout: float) -> int:
        """Until nothing sent is outstanding (or ``timeout``); returns how many still are."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                left = len(self.outstanding)
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(POLL_SECONDS)

    # ------------------------------------------------------------------ phases

    def warm_up(self, students: int, subscribers: int) -> float:
        """Buyers for the first links and refunds, linked subscribers for the renewals (not measured)."""
        began = time.monotonic()
        per_second = self.args.rate * self.mix["purchase"] / sum(self.mix.values()) or self.args.rate
        buyers = [self.new_buyer("comunidade") for _ in range(subscribers)]
        buyers += [self.new_buyer("curso") for _ in range(students)]
        self.paced([("purchase", b) for b in buyers], per_second, False, time.monotonic())
        if self.wait_idle(120):
            raise SystemExit("warm-up: the purchases did not finish within 2 minutes")
        with self.lock:
            ready, self.subscribers = self.subscribers, []
        per_second = self.args.rate * max(self.mix["link"], 1) / sum(self.mix.values())
        self.paced([("link", b) for b in ready], per_second, False, time.monotonic())
        if self.wait_idle(120):
            raise SystemExit("warm-up: the links did not finish within 2 minutes")
        return time.monotonic() - began

    def run(self) -> None:
        order = interleave(self.mix)
        total = int(round(self.args.rate * self.args.minutes * 60))
        with self.lock:
            self.start = time.monotonic()
        self.paced([(order[n % len(order)], None) for n in range(total)], self.args.rate, True, self.start)


def _quiet(read, default):
    try:
        return read()
    except Exception:  # noqa: BLE001 - an optional figure
        return default


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} ms"


def _pair(values: list[float]) -> str:
    if not values:
        return f"{'-':^11}"
    return f"{percentile(values, 50):5.2f}/{percentile(values, 99):<5.2f}"


COLUMNS = ("link (role)" if k == "link" else k for k in KINDS)
HEADER = (
    "per minute: seconds p50/p99 of what became final in it; not final and queue (waiting / scheduled, "
    "max waiting): means over it\n"
    f"{'min':>3} {'sent':>5}  " + "  ".join(f"{k:<11}" for k in COLUMNS) + f"  {'not final':>9}  {'queue':>18}  "
    f"{'RSS MB api':>10} | {'workers':<9} {'pg CPU':>6}  {'db ms/ev':>8}"
)


def format_minute(m: Minute) -> str:
    cells = "  ".join(_pair(m.latencies[k]) for k in KINDS)
    queue = f"{m.queue_mean:.1f} / {m.scheduled_mean:.1f} ({m.queue_max})"
    cpu = f"{m.pg_cpu * 100:.0f}%" if m.pg_cpu is not None else "-"
    db = f"{m.db_ms_per_event:.2f}" if m.db_ms_per_event is not None else "-"
    workers = ",".join(f"{r:.0f}" for r in m.rss_workers)
    return (
        f"{m.number:>3} {m.sent:>5}  {cells}  {m.open_mean:>9.1f}  {queue:>18}  "
        f"{m.rss_api:>10.0f} | {workers:<9} {cpu:>6}  {db:>8}"
    )


def grows(reference: float, last: float, allowance: float) -> bool:
    """Flat means the last minute is no more than max(10 %, allowance) above the reference minute."""
    return last > reference + max(0.10 * reference, allowance)


def summary(
    soak: Soak, args, settle: float, warm_up_seconds: float, left: int, fakes, history: dict | None, cpu: dict
) -> None:
    minutes = soak.minutes
    # What is not final by the end counts as slower than anything measured (inf), not as absent.
    unfinished: Counter = Counter()
    with soak.lock:
        for item in soak.outstanding.values():
            if item.measured:
                unfinished["link+" if item.kind == "link" else item.kind] += 1
                unfinished["link"] += item.kind == "link" and not item.role_seen
    results = {kind: values + [math.inf] * unfinished[kind] for kind, values in soak.results.items()}
    total = sum(soak.sent_by_kind.values())
    kinds = ", ".join(f"{k} {soak.sent_by_kind[k]}" for k in KINDS)
    print()
    print(
        f"soak: {args.rate:g} events/s for {args.minutes} min: {total} sent ({kinds}); "
        f"{args.workers} worker process(es) x ({args.threads} threads + {args.lane_threads} ManyChat lane), "
        f"API {args.api_workers} process(es); ORDER_SETTLE_SECONDS {settle:g}; "
        + ("database pre-filled with a year of history" if history is not None else "empty database")
    )
    late = soak.lateness
    print(
        f"warm-up {warm_up_seconds:.0f} s; pacing: sends late by p99 {percentile(late, 99) * 1000:.1f} ms, "
        f"max {max(late, default=0) * 1000:.1f} ms; skipped for want of a ready student: "
        f"{dict(soak.missed) or 'none'}; errors: {dict(soak.errors) or 'none'}"
    )
    print("kind          count    p50     p99     max  not final  (seconds, end to end; inf: not final by the end)")
    for kind in (*KINDS, "link+"):
        values = results[kind]
        label = {"link": "link (role)", "link+": "link (steps)"}.get(kind, kind)
        print(
            f"{label:<12} {len(values):>6}  {percentile(values, 50):6.2f}  {percentile(values, 99):6.2f}  "
            f"{max(values, default=math.nan):6.2f}  {unfinished[kind]:>9}"
        )
    print(
        f"not final after the {args.drain:g} s drain: {left}; failed steps {soak.failed_steps}; events not processed "
        f"{dict(soak.not_processed) or 'none'}; purchases without a code {soak.no_code}; links without the role "
        f"{soak.no_role}; ManyChat 429s {fakes[1].rate_limited}; Discord 429s {fakes[0].rate_limited}"
    )
    if not minutes:
        print("no full minute measured")
        return
    ref = minutes[1] if len(minutes) >= 3 else minutes[0]
    last = minutes[-1]
    db_ms, pg_ms = (
        _mean([getattr(m, name) for m in minutes if m.number >= ref.number])
        for name in ("db_ms_per_event", "pg_cpu_ms_per_event")
    )
    print(
        f"per event, minute {ref.number} on: database time {_ms(db_ms)} (pg_stat_database.active_time), "
        f"PostgreSQL backends' CPU {_ms(pg_ms)}; whole run: CPU of "
        + ", ".join(f"{name} {value:.1f} ms" for name, value in cpu.items())
    )

    def verdict(ok: bool) -> str:
        return "MET" if ok else "MISSED"

    print("targets:")
    link_p99 = percentile(results["link"], 99)
    print(f"  link -> role p99 <= 1 s: {link_p99:.2f} s  {verdict(link_p99 <= 1.0)}")
    limit = settle + 1.0
    cells = [(k, percentile(results[k], 99)) for k in WEBHOOK_KINDS if results[k]]
    print(
        f"  webhook steps p99 <= {limit:g} s (ORDER_SETTLE_SECONDS + 1), each kind: "
        + ", ".join(f"{k} {p:.2f} s" for k, p in cells)
        + f"  {verdict(all(p <= limit for _, p in cells))}"
    )
    events_allowance = args.rate * 1.0
    queue_ref, queue_last = ref.queue_mean + ref.scheduled_mean, last.queue_mean + last.scheduled_mean
    queue_ok = not grows(queue_ref, queue_last, events_allowance)
    open_ok = not grows(ref.open_mean, last.open_mean, events_allowance)
    print(
        f"  flat from minute {ref.number} to minute {last.number} (last <= reference + max(10 %, allowance)):\n"
        f"    queue depth (waiting + scheduled, mean) {queue_ref:.1f} -> {queue_last:.1f} "
        f"(allowance {events_allowance:g})  {verdict(queue_ok)}\n"
        f"    events not final (mean) {ref.open_mean:.1f} -> {last.open_mean:.1f} "
        f"(allowance {events_allowance:g})  {verdict(open_ok)}"
    )
    pairs = [("api", ref.rss_api, last.rss_api)]
    pairs += [(f"worker {n + 1}", a, b) for n, (a, b) in enumerate(zip(ref.rss_workers, last.rss_workers, strict=True))]
    rss_ok = all(not grows(a, b, RSS_ALLOWANCE_MB) for _, a, b in pairs)
    print(
        "    RSS "
        + ", ".join(f"{name} {a:.0f} -> {b:.0f} MB" for name, a, b in pairs)
        + f" (allowance {RSS_ALLOWANCE_MB:g} MB)  {verdict(rss_ok)}"
    )
    if ref is minutes[0]:
        print(f"    (a {args.minutes}-minute run: minute 1 is the reference; the target is judged from minute 2)")
    if history is not None:
        if args.baseline_db_ms and db_ms is not None:
            ratio = db_ms / args.baseline_db_ms
            print(
                f"  database time per event <= 1.5x an empty database's ({args.baseline_db_ms:g} ms): "
                f"{db_ms:.2f} ms ({ratio:.2f}x)  {verdict(ratio <= 1.5)}"
            )
        else:
            print("  database time per event <= 1.5x an empty database's: give --baseline-db-ms to judge")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--rate", type=float, default=20.0, help="events per second (all kinds)")
    parser.add_argument("--mix", type=parse_mix, default=parse_mix(DEFAULT_MIX), help=f"[{DEFAULT_MIX}]")
    parser.add_argument("--workers", type=int, default=1, help="engine worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker")
    parser.add_argument("--lane-threads", type=int, default=8, help="ManyChat lane threads per worker")
    parser.add_argument("--api-workers", type=int, default=1, help="engine serve --workers")
    parser.add_argument("--settle-seconds", type=float, default=None, help="ORDER_SETTLE_SECONDS [engine's default]")
    parser.add_argument("--warm-up", type=float, default=10.0, help="seconds of links the warm-up prepares")
    parser.add_argument("--drain", type=float, default=60.0, help="seconds to wait for the last events")
    parser.add_argument("--history", action="store_true", help="pre-fill a year of a 2,000-student course")
    parser.add_argument("--baseline-db-ms", type=float, default=None, help="an empty database's ms per event")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    args = parser.parse_args(argv)
    if not 1 <= args.minutes <= 120 or not 0 < args.rate <= 200:
        parser.error("--minutes 1-120, --rate up to 200")
    logging.basicConfig(level=logging.WARNING)

    def stop(signum, frame) -> None:  # SIGTERM stops like Ctrl-C: everything started is stopped
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    from engine.settings import Settings

    settle = args.settle_seconds
    if settle is None:
        import os

        settle = float(os.environ.get("ORDER_SETTLE_SECONDS", Settings.model_fields["order_settle_seconds"].default))
    mix, weight = args.mix, sum(args.mix.values())
    share = {k: args.rate * mix[k] / weight for k in KINDS}
    students = math.ceil((share["link"] + share["refund"]) * args.warm_up)
    subscribers = math.ceil(share["renewal"] * 30) if mix["renewal"] else 0  # each renews every ~30 s
    buyers = subscribers + students + math.ceil(share["purchase"] * args.minutes * 60) + 1

    run = uuid.uuid4().hex[:6]
    course = Course(run)
    discord = discord_app.create_app(token="bench", route_limit=50, route_window=1.0, global_limit=50)
    discord.state.fake.add_role(COMMUNITY_ROLE, "Comunidade", position=2)
    manychat = manychat_app.create_app(token="bench")
    from tests.e2e.conftest import _seed_manychat

    _seed_manychat(manychat.state.fake)
    for i in range(buyers):
        manychat.state.fake.seed_subscriber(
            email=course.email(i), whatsapp_phone=course.whatsapp(i), first_name="Aluno"
        )
        discord.state.fake.add_member(course.discord_id(i))
    index_manychat(manychat.state.fake)
    queue = f"bench-soak-{run}"
    clear_queue(queue)
    history = None
    try:
        with contextlib.ExitStack() as stack:
            stack.callback(clear_queue, queue)
            dsn = stack.enter_context(bench_database(keep=args.keep))
            if args.history:
                from bench.history import fill

                began = time.monotonic()
                history = fill(dsn)
                print(f"history: {history} ({time.monotonic() - began:.0f} s)", flush=True)
            discord_url = stack.enter_context(serve(discord))
            manychat_url = stack.enter_context(serve(manychat))
            extra = {} if args.settle_seconds is None else {"ORDER_SETTLE_SECONDS": str(args.settle_seconds)}
            env = engine_env(dsn, discord_url, manychat_url, queue, **extra)
            workers = Workers(env, ["--threads", str(args.threads), "--lane-threads", str(args.lane_threads)])
            stack.callback(workers.stop)
            api, url = start_api(env, workers=args.api_workers)
            stack.callback(stop_process, api)
            workers.start(args.workers)
            client = stack.enter_context(httpx.Client(base_url=url, timeout=10))
            pool = ThreadPoolExecutor(SEND_THREADS, thread_name_prefix="send")
            stack.callback(pool.shutdown, wait=True, cancel_futures=True)

            from engine.db.session import session_factory
            from engine.onboarding.linking import LinkService
            from engine.pipeline.rules_repository import RulesRepository
            from engine.worker import URGENT

            service = LinkService(
                session_factory(Settings(ENGINE_ENV="test", database_url=dsn)),
                RulesRepository(REPO / "rules"),
                remote_enqueue(queue, priority=URGENT),
            )
            soak = Soak(args, mix, course, client, service, dsn, pool, QueueDepth(queue), api.pid, workers)
            watcher = threading.Thread(target=soak.watch, name="watch", daemon=True)
            watcher.start()
            stack.callback(watcher.join, 10)
            stack.callback(soak.stopping.set)
            vacuum = StandInAutovacuum(dsn, soak) if StandInAutovacuum.needed(dsn) else None
            if vacuum is not None:
                stack.callback(lambda: print(f"stand-in autovacuum runs: {dict(vacuum.runs) or 'none'}", flush=True))
            if vacuum is not None:
                print(
                    "this server runs with autovacuum off: the soak vacuums each table at autovacuum's "
                    "thresholds instead (the hot tables' from migration 0010)",
                    flush=True,
                )
                vacuum.thread.start()
            print(
                f"warm-up: {students} course buyers and {subscribers} subscribers (linked) before minute 1",
                flush=True,
            )
            warm_up_seconds = soak.warm_up(students, subscribers)
            print(HEADER, flush=True)
            before = (workers.cpu_used(), cpu_seconds(api.pid), time.process_time())
            soak.run()
            left = soak.wait_idle(args.drain)
            soak.stopping.set()
            watcher.join(10)
            used = (workers.cpu_used(), cpu_seconds(api.pid), time.process_time())
            events = max(1, sum(soak.sent_by_kind.values()))
            cpu = {
                name: (after - start) * 1000 / events
                for name, start, after in zip(
                    ("the workers", "the API", "this script (fakes + load)"), before, used, strict=True
                )
            }
            fakes = (discord.state.fake, manychat.state.fake)
            summary(soak, args, settle, warm_up_seconds, left, fakes, history, cpu)
    except KeyboardInterrupt:
        print("interrupted: everything started was stopped", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
