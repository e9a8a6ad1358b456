"""`engine sync hotmart` over a large account: 10,000 subscriptions and 20,000 sales compared with
the event log, against the fake Hotmart API over HTTP, on PostgreSQL.

The account (``tests/fakes/hotmart_store.py``): ``--subscriptions`` subscriptions of the two
subscription products (each with its first payment in the sales history) and one-time sales of
the course up to ``--sales`` sales in all, ordered over the last 50 days; a few per cent refunded,
charged back, disputed, cancelled. The engine knows all but ``--missed`` of every hundred changes
(their webhooks and memberships are written straight into the database): those are what the run
must find, one finding each.

The fake enforces Hotmart's 500 requests a minute with the ``RateLimit-*`` headers; it and the
client share one clock that only their waits move (``FakeTime``), so the waits the limit imposes
are counted, not spent. Printed: the requests made, the time the limit imposes on them, the time
the run took without those waits, the CPU the engine's thread spent (reading, comparing, storing
the run), and their sum against the 60-second target.

    TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/hotmart_sync.py
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from sqlalchemy import insert  # noqa: E402

from connectors.hotmart_api import HotmartApi  # noqa: E402
from engine.catchup import run_sync  # noqa: E402
from engine.db.migrate import upgrade  # noqa: E402
from engine.db.models import Event, Membership, Student  # noqa: E402
from engine.db.session import dispose_all, engine_of, session_factory  # noqa: E402
from engine.pipeline.rules_repository import RulesRepository  # noqa: E402
from engine.pipeline.runtime import Runtime  # noqa: E402
from engine.settings import Settings  # noqa: E402
from engine.sources.hotmart import SOURCE as HOTMART  # noqa: E402
from tests.fakes.hotmart_api_app import (  # noqa: E402
    CLIENT_ID,
    CLIENT_SECRET,
    TOKEN_PATH,
    FakeHotmartApi,
    FakeTime,
    basic_token,
    create_app,
)
from tests.fakes.hotmart_store import HotmartStore  # noqa: E402
from tests.fakes.server import serve  # noqa: E402

TARGET_SECONDS = 60.0
SUBSCRIPTION_PRODUCTS = ("2222222", "3333333")  # comunidade, combo
COURSE = "1111111"
PRODUCT_KEYS = {"1111111": "curso", "2222222": "comunidade", "3333333": "combo"}
SALE_OUTCOMES = (("APPROVED", 0.93), ("REFUNDED", 0.03), ("CHARGEBACK", 0.01), ("PROTESTED", 0.01), ("COMPLETE", 0.02))


@dataclass
class Result:
    subscriptions: int
    sales: int
    expected: int  # changes the engine does not know
    found: int
    requests: int
    limit_seconds: float  # the waits the rate limit imposed (counted, not spent)
    wall_seconds: float  # the run, without those waits
    engine_cpu_seconds: float  # the CPU of the thread that ran the sync
    fake_cpu_seconds: float  # the rest of this process's: the fake Hotmart API's threads
    rate_limited: int

    @property
    def total_seconds(self) -> float:
        return self.wall_seconds + self.limit_seconds


def seed(store: HotmartStore, now: datetime, subscriptions: int, sales: int, missed: int, rng: random.Random):
    """The account, and what the engine knows of it: (memberships, events) rows, and how many changes it does not."""
    memberships: list[tuple[str, str, str]] = []  # (email, product key, state)
    events: list[dict] = []
    unknown = 0

    def known(email: str, product_id: str, transaction: str | None, event_type: str, key: str | None) -> None:
        events.append(
            {
                "source": "hotmart",
                "type": event_type,
                "dedupe_key": f"hotmart:bench-{len(events)}",
                "change_key": key,
                "payload": {},
                "status": "processed",
                "email": email,
                "transaction": transaction,
                "occurred_at": now - timedelta(days=55),
                "received_at": now - timedelta(days=55),
                "correlation_id": uuid.uuid4().hex,
                "failures": 0,
            }
        )

    for number in range(subscriptions):
        product = SUBSCRIPTION_PRODUCTS[number % 2]
        email = f"assinante{number:06d}@example.com"
        accession = now - timedelta(minutes=rng.randrange(50 * 24 * 60))
        item = store.add_subscription(product, email, accession=accession)
        cancelled = rng.random() < 0.05
        if cancelled:
            item = store.set_subscription_status(item["subscriber_code"], "CANCELLED_BY_CUSTOMER")
        first = HOTMART.api.sale_change(store.sale(item["transaction"]), {})
        memberships.append((email, PRODUCT_KEYS[product], "cancelled" if cancelled else "active"))
        if rng.randrange(100) < missed:
            unknown += 1  # its approval never came
        else:
            known(email, product, first.transaction, first.event_type, first.change_key)
        if cancelled:
            change = HOTMART.api.cancellation(HOTMART.api.subscription(item))
            if rng.randrange(100) < missed:
                unknown += 1
            else:
                known(email, product, None, change.event_type, change.change_key)
    for number in range(max(0, sales - subscriptions)):
        email = f"aluno{number:06d}@example.com"
        status = rng.choices([s for s, _ in SALE_OUTCOMES], [w for _, w in SALE_OUTCOMES])[0]
        approved = now - timedelta(minutes=rng.randrange(50 * 24 * 60))
        item = store.add_sale(COURSE, email, status=status, approved=approved)
        change = HOTMART.api.sale_change(item, {})
        memberships.append((email, "curso", "active"))
        if change.event_type != "PURCHASE_APPROVED":  # the approval came before the refund...
            known(email, COURSE, change.transaction, "PURCHASE_APPROVED", None)
        if rng.randrange(100) < missed:
            unknown += 1
        else:
            known(email, COURSE, change.transaction, change.event_type, change.change_key)
    return memberships, events, unknown


def write_engine(sessions, memberships: list[tuple[str, str, str]], events: list[dict], now: datetime) -> None:
    """The students, their memberships (moved by webhooks, the oldest of the account's dates) and events."""
    with sessions.begin() as session:
        emails = sorted({email for email, _, _ in memberships})
        ids = dict(
            zip(
                emails,
                session.scalars(
                    insert(Student).returning(Student.id, sort_by_parameter_order=True), [{"email": e} for e in emails]
                ),
                strict=True,
            )
        )
        session.execute(
            insert(Membership),
            [
                {
                    "student_id": ids[email],
                    "product_key": key,
                    "state": state,
                    "last_event_at": now - timedelta(days=55),
                }
                for email, key, state in memberships
            ],
        )
        for start in range(0, len(events), 5000):
            session.execute(insert(Event), events[start : start + 5000])


def run(database_url: str, *, subscriptions: int, sales: int, missed: int, seed_number: int = 1) -> Result:
    """One bench run in a migrated database at ``database_url`` (the caller's to drop)."""
    now = datetime.now(UTC)
    settings = Settings(ENGINE_ENV="test", database_url=database_url, rules_dir=REPO / "rules")
    upgrade(settings)
    sessions = session_factory(settings)
    store = HotmartStore(now=lambda: now)
    memberships, events, unknown = seed(store, now, subscriptions, sales, missed, random.Random(seed_number))
    write_engine(sessions, memberships, events, now)
    time_ = FakeTime()
    fake = FakeHotmartApi(store=store, clock=time_.clock)
    rt = Runtime(settings=settings, sessions=sessions, rules=RulesRepository(settings.rules_dir), connectors={})
    with serve(create_app(fake)) as url:
        client = HotmartApi(
            CLIENT_ID,
            CLIENT_SECRET,
            basic_token(),
            auth_url=url + TOKEN_PATH,
            api_base=url,
            sleep=time_.sleep,
            clock=time_.clock,
        )
        started, cpu, process = time.monotonic(), time.thread_time(), time.process_time()
        _, report, _ = run_sync(rt, client, mode="report", trigger="bench", since=now - timedelta(days=60))
        wall, cpu = time.monotonic() - started, time.thread_time() - cpu
        process = time.process_time() - process
        client.close()
    engine_of(sessions).dispose()
    return Result(
        subscriptions=sum(read["subscriptions"] for read in report.read.values()),
        sales=sum(read["sales"] for read in report.read.values()),
        expected=unknown,
        found=len(report.findings),
        requests=len(fake.requests),
        limit_seconds=sum(time_.slept),
        wall_seconds=wall,
        engine_cpu_seconds=cpu,
        fake_cpu_seconds=max(process - cpu, 0.0),
        rate_limited=fake.rate_limited,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscriptions", type=int, default=10_000)
    parser.add_argument("--sales", type=int, default=20_000, help="in all, the subscriptions' first payments included")
    parser.add_argument("--missed", type=int, default=3, help="changes of every hundred the engine never heard of")
    parser.add_argument(
        "--database-url", default=os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    import psycopg

    name = f"engine_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.database_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        result = run(
            urlunsplit(urlsplit(args.database_url)._replace(path=f"/{name}")),
            subscriptions=args.subscriptions,
            sales=args.sales,
            missed=args.missed,
        )
    finally:
        dispose_all()
        with psycopg.connect(args.database_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(f"read               {result.subscriptions} subscription(s), {result.sales} sale(s)")
    print(f"found              {result.found} change(s) no event brought (expected {result.expected})")
    print(f"requests           {result.requests} ({result.rate_limited} answered 429)")
    print(
        f"rate limit         {result.limit_seconds:.1f} s of waits imposed "
        f"(500 requests a minute: {result.requests} fit in one; counted, not spent)"
    )
    print(f"run                {result.wall_seconds:.1f} s without those waits")
    print(f"engine CPU         {result.engine_cpu_seconds:.1f} s (the sync's thread: reading, comparing, storing)")
    print(f"fake's CPU         {result.fake_cpu_seconds:.1f} s (the fake Hotmart API, in this process's other threads)")
    print(f"total              {result.total_seconds:.1f} s (target <= {TARGET_SECONDS:.0f} s)")
    print(f"machine load       {' '.join(f'{x:.1f}' for x in os.getloadavg())} (1/5/15 min, {os.cpu_count()} cores)")
    ok = result.found == result.expected and result.total_seconds <= TARGET_SECONDS
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
