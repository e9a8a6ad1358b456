"""The worker's sync: every ``HOTMART_SYNC_SCHEDULE`` while ``HOTMART_SYNC_ENABLED``, reporting, or
storing what ``HOTMART_SYNC_APPLY`` allows; what it leaves is one ``hotmart.drift`` alert, and a
run that fails (Hotmart unreachable, the credentials refused) one ``hotmart.sync_failed``."""

from __future__ import annotations

import logging

from connectors.errors import WireError
from engine import alert_texts
from engine.catchup.alerts import alert_drift
from engine.catchup.runs import Busy, Mode, ReaderFactory, run_sync, syncable
from engine.db import stored_runs
from engine.db.models import SyncRun
from engine.pipeline.alerts import notify_alerts, raise_alert
from engine.pipeline.runtime import Runtime

log = logging.getLogger(__name__)

MODES: dict[str, Mode] = {"none": "report", "grants": "grants", "all": "all"}


def hotmart_reader(settings):
    """The real client (``connectors.hotmart_api``) the settings describe."""
    from connectors.hotmart_api import HotmartApi

    return HotmartApi.from_settings(settings)


def scheduled_run(rt: Runtime, reader_factory: ReaderFactory = hotmart_reader, source: str = "hotmart") -> int | None:
    """The scheduled run; None when the sync is off, another runs, or one started minutes ago."""
    platform = syncable(source)
    if not getattr(rt.settings, f"{platform.name}_sync_enabled", False):
        log.info("%s sync: %s_SYNC_ENABLED is off; skipping", platform.title, platform.name.upper())
        return None
    with rt.sessions() as session:
        recent = stored_runs.scheduled_lately(session, SyncRun, rt.now(), SyncRun.source == platform.name)
    if recent:
        log.info("%s sync: a scheduled run started less than 30 minutes ago; skipping", platform.title)
        return None
    mode = MODES[getattr(rt.settings, f"{platform.name}_sync_apply")]
    reader = reader_factory(rt.settings)
    try:
        run_id, report, stored = run_sync(rt, reader, source=platform.name, mode=mode, trigger="schedule")
    except Busy:
        log.info("%s sync: another run is in progress; skipping the scheduled one", platform.title)
        return None
    except WireError as exc:
        with rt.sessions.begin() as session:
            raise_alert(
                rt,
                session,
                kind=f"{platform.name}.sync_failed",
                message=alert_texts.sync_failed(platform, exc.detail, exc.error),
                group_key=f"{platform.name}.sync_failed",
            )
        notify_alerts(rt)
        log.warning("%s sync failed: %s", platform.title, exc)
        return None
    finally:
        close = getattr(reader, "close", None)
        if close is not None:
            close()
    alert_drift(rt, platform, run_id, report, stored)
    return run_id
