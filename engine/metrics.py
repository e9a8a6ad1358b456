"""Prometheus metrics, served by the API at ``GET /metrics`` (admin token).

Where each number comes from, so that one scrape of the API covers every process:

* the database, read at scrape time (what the workers did): events by status and type, steps
  by action and status, step errors by error class, open alerts, age of the oldest unprocessed
  event and of the last webhook;
* the queue (Redis, or the embedded SQLite queue): its depth;
* Redis (the workers' HTTP calls to Discord and ManyChat): calls by status class, 429s and
  transport errors per connector, counted by :class:`CountingTransport` into one Redis hash
  (in memory in the embedded setup, where the API process runs the worker);
* the API process itself: webhooks by outcome and the acknowledgement latency histogram
  (with ``engine serve --workers N``, prometheus-client's multiprocess mode adds them up).
"""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter as Tally
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import httpx
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from engine.db.webhooks import last_webhook_at
from engine.sources import PLATFORMS
from engine.statuses import EventStatus

log = logging.getLogger(__name__)

# --- the API process's own numbers ---------------------------------------------------------

WEBHOOKS = Counter("engine_webhooks", "Webhooks answered (every source), by outcome", ["outcome"])
# The same answers by source: engine_webhooks keeps its one label for dashboards built on it.
SOURCE_WEBHOOKS = Counter(
    "engine_source_webhooks", "Webhooks answered, by source (hotmart, kiwify ...) and outcome", ["source", "outcome"]
)
ACK_SECONDS = Histogram(
    "engine_webhook_ack_seconds",
    "Time from request to acknowledgement of a webhook",
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
_OUTCOMES = {401: "unauthorized", 400: "rejected", 413: "too_large", 503: "unavailable"}


def observe_webhook(status_code: int, body: bytes, seconds: float, source: str) -> None:
    if status_code == 200:
        outcome = "duplicate" if b'"duplicate"' in body else "accepted"
    else:
        outcome = _OUTCOMES.get(status_code, str(status_code))
    WEBHOOKS.labels(outcome).inc()
    SOURCE_WEBHOOKS.labels(source, outcome).inc()
    ACK_SECONDS.observe(seconds)


# --- connector HTTP calls, counted where they happen (the workers) ---------------------------


class ConnectorCounters:
    """Counts shared by every process: a Redis hash (HINCRBY) or, without Redis, this process's memory."""

    def __init__(self, redis_url: str | None = None, key: str = "lifecycle-engine:metrics"):
        self._key = key
        self._memory: Tally[str] = Tally()
        self._lock = threading.Lock()
        self._redis = None
        if redis_url:
            from redis import Redis

            self._redis = Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=2)

    def incr(self, field: str) -> None:
        if self._redis is None:
            with self._lock:
                self._memory[field] += 1
            return
        try:
            self._redis.hincrby(self._key, field, 1)
        except Exception:  # noqa: BLE001 - a metric never fails a connector call
            log.debug("could not count %s", field, exc_info=True)

    def snapshot(self) -> dict[str, int]:
        if self._redis is None:
            with self._lock:
                return dict(self._memory)
        return {k.decode(): int(v) for k, v in self._redis.hgetall(self._key).items()}


class CountingTransport(httpx.BaseTransport):
    """Wraps a connector's transport: every response by status class, 429s, transport errors."""

    def __init__(self, connector: str, counters: ConnectorCounters, inner: httpx.BaseTransport):
        self._connector, self._counters = connector, counters
        self._inner = inner  # handed each request unchanged (its extensions too: the in-flight trace)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = self._inner.handle_request(request)
        except httpx.TransportError as exc:
            self._counters.incr(f"{self._connector}|error|{type(exc).__name__}")
            raise
        self._counters.incr(f"{self._connector}|calls|{response.status_code // 100}xx")
        if response.status_code == 429:
            self._counters.incr(f"{self._connector}|rate_limited|")
        return response

    def close(self) -> None:
        self._inner.close()


_shared: dict[tuple[str | None, str], ConnectorCounters] = {}


def connector_counters(settings) -> ConnectorCounters:
    """One counter store per process and queue (the Redis key carries the queue name)."""
    key = (settings.redis_url, settings.queue_name)
    if key not in _shared:
        _shared[key] = ConnectorCounters(settings.redis_url, f"{settings.queue_name}:metrics")
    return _shared[key]


# --- read at scrape time ----------------------------------------------------------------------

UNPROCESSED = (EventStatus.RECEIVED, EventStatus.PROCESSING, EventStatus.RETRYING)


class EngineCollector(Collector):
    """The numbers of every process, read from the database, the queue and the shared counters."""

    def __init__(self, runtime, queue_depth: Callable[[], int] | None = None):
        self._rt, self._queue_depth = runtime, queue_depth

    def collect(self) -> Iterable:
        from engine.db.models import ActionRun, Alert, Event
        from engine.db.stuck import find_stuck

        now = datetime.now(UTC)
        with self._rt.sessions() as session:
            yield _grouped(session, "engine_events", "Events by status and type", Event.status, Event.type)
            yield _grouped(
                session, "engine_steps", "Planned steps by action and status", ActionRun.action, ActionRun.status
            )
            yield _grouped(
                session,
                "engine_step_errors",
                "Steps that ended with a named error (discord.forbidden...), by error class and status",
                ActionRun.error,
                ActionRun.status,
                where=ActionRun.error.is_not(None),
            )
            open_alerts = session.scalar(select(func.count()).select_from(Alert).where(Alert.acknowledged_at.is_(None)))
            yield GaugeMetricFamily("engine_alerts_open", "Alerts not acknowledged", value=open_alerts or 0)
            oldest = session.scalar(select(func.min(Event.received_at)).where(Event.status.in_(UNPROCESSED)))
            yield GaugeMetricFamily(
                "engine_oldest_unprocessed_event_age_seconds",
                "Age of the oldest event received but not processed yet (0 when none)",
                value=_age(now, oldest),
            )
            stuck = find_stuck(session, self._rt.settings, now)
            yield GaugeMetricFamily(
                "engine_stuck_events",
                "Events received or processing longer than STUCK_AFTER_SECONDS after arriving",
                value=stuck.events,
            )
            yield GaugeMetricFamily(
                "engine_stuck_student_locks",
                "Student locks held by a database connection idle longer than STUCK_AFTER_SECONDS",
                value=len(stuck.idle_locks),
            )
            # One indexed lookup per platform (a GROUP BY would read every event at every scrape).
            newest = {name: at for name in PLATFORMS if (at := last_webhook_at(session, name)) is not None}
            last = max(newest.values(), default=None)
            yield GaugeMetricFamily(
                "engine_last_webhook_age_seconds",
                "Seconds since the last webhook (any source) was received (-1 before the first)",
                value=_age(now, last) if last else -1,
            )
            by_source = GaugeMetricFamily(
                "engine_source_last_webhook_age_seconds",
                "Seconds since the last webhook of each source was received (-1 before the first)",
                labels=["source"],
            )
            for name in PLATFORMS:
                by_source.add_metric([name], _age(now, newest[name]) if newest.get(name) else -1)
            yield by_source
        if self._queue_depth is not None:
            try:
                depth = float(self._queue_depth())
            except Exception:  # noqa: BLE001 - the queue being down is what healthz reports
                depth = float("nan")
            yield GaugeMetricFamily("engine_queue_depth", "Tasks waiting in the queue (NaN: unreachable)", value=depth)
        rules = self._rt.rules
        info = GaugeMetricFamily("engine_rules_info", "The rules version the API runs", labels=["version"])
        info.add_metric([rules.version or ""], 1)
        yield info
        broken = int(rules.load_error is not None)
        yield GaugeMetricFamily("engine_rules_load_error", "1 while the rules on disk are invalid", value=broken)
        yield from self._connectors()

    def _connectors(self) -> Iterable:
        try:
            counts = connector_counters(self._rt.settings).snapshot()
        except Exception:  # noqa: BLE001 - Redis down: the rest of the scrape still answers
            log.warning("could not read the connector counters", exc_info=True)
            return
        calls = CounterMetricFamily(
            "engine_connector_http_requests",
            "HTTP calls to Discord/ManyChat, by status class",
            labels=["connector", "status"],
        )
        limited = CounterMetricFamily("engine_connector_rate_limited", "429 answers received", labels=["connector"])
        failed = CounterMetricFamily(
            "engine_connector_transport_errors",
            "Calls that got no answer, by error class",
            labels=["connector", "error"],
        )
        for field, value in sorted(counts.items()):
            connector, kind, detail = (field.split("|") + ["", ""])[:3]
            if kind == "calls":
                calls.add_metric([connector, detail], value)
            elif kind == "rate_limited":
                limited.add_metric([connector], value)
            elif kind == "error":
                failed.add_metric([connector, detail], value)
        yield from (calls, limited, failed)


def _grouped(session, name: str, documentation: str, *columns, where=None) -> GaugeMetricFamily:
    """A gauge with one sample per distinct value of ``columns``: the row count."""
    labels = [column.key for column in columns]
    family = GaugeMetricFamily(name, documentation, labels=labels)
    query = select(*columns, func.count()).group_by(*columns)
    if where is not None:
        query = query.where(where)
    for *values, count in session.execute(query):
        family.add_metric([value or "" for value in values], count)
    return family


def _age(now: datetime, then: datetime | None) -> float:
    if then is None:
        return 0.0
    if then.tzinfo is None:  # SQLite hands back naive UTC
        then = then.replace(tzinfo=UTC)
    return max((now - then).total_seconds(), 0.0)


def render(collector: EngineCollector) -> bytes:
    """The exposition text: the API process's own metrics (all API processes' in multiprocess mode)
    followed by the engine's."""
    from prometheus_client import REGISTRY

    engine = CollectorRegistry()
    engine.register(collector)
    own = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        own = CollectorRegistry()
        multiprocess.MultiProcessCollector(own)
    return generate_latest(own) + generate_latest(engine)
