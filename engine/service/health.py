"""The health checks behind ``/healthz`` and ``engine healthcheck``: each raises when unhealthy."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from engine.db.models import Heartbeat, utcnow
from engine.pipeline.worker_heartbeat import StaleHeartbeat, check_worker
from engine.settings import Settings

__all__ = ["StaleHeartbeat", "check_database_writable", "check_queue", "check_worker_heartbeat", "stuck_report"]


def _sessions(source: Settings | sessionmaker[Session]) -> sessionmaker[Session]:
    if isinstance(source, Settings):
        from engine.db.session import session_factory

        return session_factory(source)
    return source


def check_database_writable(source: Settings | sessionmaker[Session]) -> None:
    """A real write, rolled back: ``SELECT 1`` succeeds on a read-only database, this does not."""
    with _sessions(source)() as session:
        try:
            now = utcnow()
            session.add(Heartbeat(name="healthcheck", beat_at=now, started_at=now))
            session.flush()
        finally:
            session.rollback()


def stuck_report(sessions: sessionmaker[Session], settings: Settings) -> str | None:
    """What is stuck now (events, idle student locks), in one line; None when nothing is."""
    from engine.db.stuck import find_stuck

    with sessions() as session:
        stuck = find_stuck(session, settings, utcnow())
    return stuck.describe(settings) if stuck else None


def check_queue(huey) -> None:
    huey.pending_count()  # a round trip to Redis (or the SQLite queue)


def check_worker_heartbeat(
    settings: Settings, *, sessions: sessionmaker[Session] | None = None, name: str | None = None
) -> float:
    """The newest worker heartbeat's age (of ``name`` only, if given); raises :class:`StaleHeartbeat`."""
    with _sessions(sessions or settings)() as session:
        return check_worker(session, stale_after=settings.worker_stale_seconds, now=utcnow(), name=name)
