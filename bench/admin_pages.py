"""The admin page's speed on a 10,000-student course: p50 and p95 of each page, taken in the server.

Fills a throwaway database with ``bench/history.py``'s ``fill`` (10,000 students; ``--days 73`` makes
about 200,000 events), serves the application in this process (``create_app`` on ``build_runtime``,
as ``engine serve`` does), signs in with ``ADMIN_API_TOKEN`` and requests each page ``--requests``
times through Starlette's TestClient, the pages taking turns (a machine busy with other work slows
them alike). A wrapper around the application times each request from the moment it reaches the
application to its last byte out: the server's part, not the client's. The pages:

* every GET route under ``/ui`` the application has when it runs: those without a path parameter as
  they are, those with ``{email}`` or ``{event_id}`` with the student with the most events and the
  newest event that ran steps (a route with another parameter is named and skipped);
* the Students view with each filter, a far page, the htmx partial, each kind of search (e-mail,
  name with and without accents, phone, Discord id, transaction, a word in thousands of e-mails,
  nothing found), and the CSV export of everyone and of a filter.

Prints p50, p95 and the slowest of each, and its target: p95 ≤ 150 ms, a search ≤ 100 ms.

    .venv/bin/python bench/admin_pages.py [--students 10000] [--days 73] [--requests 30] [--keep]
    .venv/bin/python bench/admin_pages.py --prefilled-dsn postgresql://postgres@127.0.0.1:5432/engine_bench_x

Needs PostgreSQL on 127.0.0.1:5432 (``bash .ci/services``). CPU heavy: run it alone.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import psycopg

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

ADMIN_TOKEN = "bench-admin"
PAGE_TARGET_MS = 150.0
SEARCH_TARGET_MS = 100.0
WARMUP = 3


class ServerClock:
    """ASGI around the application: how long the last HTTP request took inside it, from its
    arrival to the last byte of its response (a streamed CSV included)."""

    def __init__(self, app: Any):
        self.app = app
        self.last = 0.0

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed(message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                self.last = time.perf_counter() - started

        await self.app(scope, receive, timed)


@dataclass
class Page:
    label: str
    path: str
    target_ms: float = PAGE_TARGET_MS
    headers: dict[str, str] = field(default_factory=dict)
    seconds: list[float] = field(default_factory=list)
    statuses: set[int] = field(default_factory=set)

    def figures(self) -> tuple[float, float, float]:
        ms = sorted(s * 1000 for s in self.seconds)
        p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
        return statistics.median(ms), p95, ms[-1]


def _samples(dsn: str) -> dict[str, Any]:
    """Real values to ask for: a student halfway down the list (linked, with a phone and a
    transaction), the busiest student (its first product, its newest event that ran steps), the
    newest alert, reconcile run and sync run, the commonest product and state."""
    with psycopg.connect(dsn) as conn:

        def one(sql: str) -> Any:
            return conn.execute(sql).fetchone()

        total = one("SELECT count(*) FROM students")[0]
        email, name, phone, discord_id, transaction = one(
            "SELECT s.email, s.name, s.phone, s.discord_id, m.transaction FROM students s "
            "JOIN memberships m ON m.student_id = s.id "
            "WHERE s.discord_id IS NOT NULL AND s.phone IS NOT NULL AND s.name IS NOT NULL "
            f"AND m.transaction IS NOT NULL ORDER BY s.id OFFSET {total // 2} LIMIT 1"
        )
        busiest_id, busiest = one(
            "SELECT s.id, s.email FROM events e JOIN students s ON s.id = e.student_id "
            "GROUP BY s.id ORDER BY count(*) DESC LIMIT 1"
        )
        busiest_product = one(f"SELECT min(product_key) FROM memberships WHERE student_id = {busiest_id}")[0]
        event_id = one(
            f"SELECT max(e.id) FROM events e JOIN action_runs r ON r.event_id = e.id WHERE e.student_id = {busiest_id}"
        )[0]
        alert_id = one("SELECT max(id) FROM alerts")[0]
        run_id = one("SELECT max(id) FROM reconcile_runs")[0]
        sync_run_id = one("SELECT max(id) FROM sync_runs")[0]
        product, state = one("SELECT product_key, state FROM memberships GROUP BY 1, 2 ORDER BY count(*) DESC LIMIT 1")
        counts = {
            table: one(f"SELECT count(*) FROM {table}")[0]
            for table in ("students", "memberships", "events", "action_runs")
        }
    return {
        "email": email,
        "name": name,
        "phone": phone,
        "discord_id": discord_id,
        "transaction": transaction,
        "product": product,
        "state": state,
        "counts": counts,
        # What a route's path or required query parameters are filled with, by name.
        "parameters": {
            name: str(value)
            for name, value in {
                "email": busiest,
                "event_id": event_id,
                "event": event_id,
                "product": busiest_product,
                "alert_id": alert_id,
                "run_id": run_id,
                "sync_run_id": sync_run_id,
            }.items()
            if value is not None
        },
    }


def _required_queries(dependant: Any) -> set[str]:
    """The query parameters a route cannot go without (its dependencies' too)."""
    names = {field.alias for field in dependant.query_params if field.field_info.is_required()}
    for dependency in dependant.dependencies:
        names |= _required_queries(dependency)
    return names


def _route_pages(app: Any, sample: dict[str, Any]) -> tuple[list[Page], list[str]]:
    """Every GET route under /ui, with real values for its parameters; the routes skipped (a
    parameter with no sample value)."""
    from fastapi.routing import iter_route_contexts

    values = sample["parameters"]
    pages, skipped = [], []
    # The included routers' routes with their prefixes (app.routes holds the routers themselves).
    for route in iter_route_contexts(app.routes):
        dependant = getattr(route.original_route, "dependant", None)
        if not (route.path or "").startswith("/ui") or "GET" not in (route.methods or ()) or dependant is None:
            continue
        names = re.findall(r"\{(\w+)(?::\w+)?\}", route.path)
        queries = sorted(_required_queries(dependant))
        if any(name not in values for name in [*names, *queries]):
            skipped.append(route.path)
            continue
        path = re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: quote(values[m.group(1)], safe=""), route.path)
        if queries:
            path += "?" + urlencode({name: values[name] for name in queries})
        pages.append(Page(route.path, path))
    return pages, skipped


def _student_pages(sample: dict[str, Any]) -> list[Page]:
    from engine.db.folding import fold

    def students(label: str, target: float = PAGE_TARGET_MS, path: str = "/ui/students", **params: Any) -> Page:
        return Page(label, f"{path}?{urlencode(params)}", target)

    def search(label: str, typed: str) -> Page:
        return students(f"search: {label}", SEARCH_TARGET_MS, q=typed)

    phone = sample["phone"]  # +55DD9XXXXXXXX, typed as a person writes it
    typed_phone = f"({phone[3:5]}) {phone[5:-4]}-{phone[-4:]}"
    return [
        students("students: page 100", page=100),
        students("students: product + state", product=sample["product"], state=sample["state"]),
        students("students: stuck", stuck=1),
        students("students: not linked", linked="no"),
        Page("students: htmx partial", "/ui/students?q=gmail&linked=yes", SEARCH_TARGET_MS, {"HX-Request": "true"}),
        search("part of an e-mail", sample["email"].split("@")[0]),
        search("name with accents", sample["name"]),
        search("name without accents", fold(sample["name"])),
        search("phone", typed_phone),
        search("Discord id", sample["discord_id"]),
        search("transaction", sample["transaction"]),
        search("thousands found", "gmail"),
        search("nothing found", "zz-nobody-zz"),
        students("export: product + state", path="/ui/students.csv", product=sample["product"], state=sample["state"]),
    ]


def _sign_in(client: Any) -> None:
    form = client.get("/ui/login")
    token = re.search(r'name="login_csrf" value="([^"]+)"', form.text).group(1)
    response = client.post(
        "/ui/login",
        data={"name": "admin", "secret": ADMIN_TOKEN, "next": "/ui/", "login_csrf": token},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text


def measure(dsn: str, *, requests: int, warmup: int = WARMUP) -> tuple[list[Page], list[str], dict[str, Any]]:
    """Each page ``warmup`` times uncounted, then ``requests`` times, the pages taking turns."""
    from fastapi.testclient import TestClient

    from engine.api.app import create_app
    from engine.db.session import engine_of
    from engine.pipeline.queue import MemoryQueue
    from engine.pipeline.runtime import build_runtime
    from engine.settings import Settings

    settings = Settings(ENGINE_ENV="test", database_url=dsn, rules_dir=REPO / "rules", admin_api_token=ADMIN_TOKEN)
    runtime = build_runtime(settings, queue=MemoryQueue())
    app = create_app(runtime)
    clock = ServerClock(app)
    sample = _samples(dsn)
    pages, skipped = _route_pages(app, sample)
    pages += _student_pages(sample)
    try:
        with TestClient(clock) as client:
            _sign_in(client)
            for turn in range(warmup + requests):
                for page in pages:
                    response = client.get(page.path, headers=page.headers, follow_redirects=False)
                    page.statuses.add(response.status_code)
                    if turn >= warmup:
                        page.seconds.append(clock.last)
    finally:
        engine_of(runtime.sessions).dispose()  # the database may be dropped next
    return pages, skipped, sample


def report(pages: list[Page], skipped: list[str], sample: dict[str, Any], requests: int) -> None:
    counts = ", ".join(f"{table} {count:,}" for table, count in sample["counts"].items())
    print(f"database: {counts}")
    print(f"{requests} requests per page, server-side ms; load average {os.getloadavg()[0]:.1f}")
    print(f"{'page':34} {'p50':>7} {'p95':>7} {'max':>7} {'target':>7}  verdict  path")
    for page in pages:
        p50, p95, slowest = page.figures()
        statuses = ",".join(map(str, sorted(page.statuses)))
        verdict = "ok" if p95 <= page.target_ms and page.statuses == {200} else "OVER"
        if page.statuses != {200}:
            verdict = f"HTTP {statuses}"
        path = page.path if len(page.path) <= 70 else page.path[:67] + "..."
        print(f"{page.label:34} {p50:7.1f} {p95:7.1f} {slowest:7.1f} {page.target_ms:7.0f}  {verdict:7}  {path}")
    for path in skipped:
        print(f"skipped {path}: no sample value for its parameter")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=73, help="of history: about 20 events per student per 73 days")
    parser.add_argument("--requests", type=int, default=30, help="per page, after the warm-up")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the filled database (its name is printed)")
    parser.add_argument("--prefilled-dsn", help="measure this database, filled before (by --keep)")
    args = parser.parse_args()
    from bench.history import fill
    from bench.stack import bench_database

    with ExitStack() as stack:
        dsn = args.prefilled_dsn
        if dsn is None:
            dsn = stack.enter_context(bench_database(keep=args.keep))
            started = time.perf_counter()
            counts = fill(dsn, students=args.students, days=args.days, seed=args.seed)
            print(f"filled in {time.perf_counter() - started:.0f} s: {counts['students']} students")
            if args.keep:
                print(f"dsn {dsn}")
        pages, skipped, sample = measure(dsn, requests=args.requests)
        report(pages, skipped, sample, args.requests)


if __name__ == "__main__":
    main()
