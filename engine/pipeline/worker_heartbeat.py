"""The worker's heartbeat row: a worker upserts its row every ``HEARTBEAT_SECONDS``; ``/healthz``,
``engine healthcheck --worker`` and ``engine doctor`` read it. (The heartbeat *files* of the
container healthchecks are engine.worker.heartbeat_file.)"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine.db.models import Heartbeat, utcnow
from engine.db.upsert import insert_for

log = logging.getLogger(__name__)

WORKER_PREFIX = "worker:"


def worker_name(host: str | None = None) -> str:
    """One row per worker host (a container's hostname): what its healthcheck reads."""
    return WORKER_PREFIX + (host or socket.gethostname())[:90]


def beat(
    session: Session,
    name: str,
    *,
    started_at: datetime,
    now: datetime | None = None,
    rules_version: str | None = None,
) -> None:
    now = now or utcnow()
    insert = insert_for(session)
    values = {"beat_at": now, "started_at": started_at, "rules_version": rules_version}
    statement = insert(Heartbeat).values(name=name, **values)
    session.execute(statement.on_conflict_do_update(index_elements=["name"], set_=values))


def worker_versions(session: Session, *, fresh_since: datetime) -> dict[str, str | None]:
    """Worker name -> the rules version it reported, for workers that beat since ``fresh_since``."""
    rows = session.execute(
        select(Heartbeat.name, Heartbeat.rules_version).where(
            Heartbeat.name.startswith(WORKER_PREFIX), Heartbeat.beat_at >= fresh_since
        )
    )
    return dict(rows.all())


def newest_beat(session: Session, name: str | None = None) -> datetime | None:
    """The newest worker heartbeat (of ``name`` only, if given)."""
    where = Heartbeat.name == name if name else Heartbeat.name.startswith(WORKER_PREFIX)
    return session.scalar(select(func.max(Heartbeat.beat_at)).where(where))


class StaleHeartbeat(Exception):
    """The worker is not known to be alive; the message says why."""


def check_worker(session: Session, *, stale_after: float, now: datetime, name: str | None = None) -> float:
    """The newest worker heartbeat's age in seconds; :class:`StaleHeartbeat` if none or too old."""
    newest = newest_beat(session, name)
    if newest is None:
        raise StaleHeartbeat("no worker heartbeat yet")
    age = (now - newest).total_seconds()
    if age > stale_after:
        raise StaleHeartbeat(f"last worker heartbeat {age:.0f} s ago (stale after {stale_after:.0f} s)")
    return age


class HeartbeatThread(threading.Thread):
    """Beats every ``interval`` seconds until stopped. A database outage is logged once, and its end."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        interval: float,
        name: str | None = None,
        clock: Callable[[], datetime] = utcnow,
        rules_version: Callable[[], str | None] = lambda: None,
    ):
        super().__init__(name="heartbeat", daemon=True)
        self.sessions, self.interval, self.beat_name, self.clock = sessions, interval, name or worker_name(), clock
        self.rules_version = rules_version
        self.started_at = clock()
        self.stopped = threading.Event()
        self._failing = False

    def beat_once(self) -> bool:
        try:
            with self.sessions.begin() as session:
                beat(
                    session,
                    self.beat_name,
                    started_at=self.started_at,
                    now=self.clock(),
                    rules_version=self.rules_version(),
                )
        except Exception as exc:  # noqa: BLE001 - the thread must outlive a database outage
            if not self._failing:
                log.warning("could not write the worker heartbeat: %s", exc)
            self._failing = True
            return False
        if self._failing:
            log.info("worker heartbeat written again")
        self._failing = False
        return True

    def run(self) -> None:
        while not self.stopped.is_set():
            self.beat_once()
            self.stopped.wait(self.interval)

    def stop(self) -> None:
        self.stopped.set()
