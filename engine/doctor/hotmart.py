"""The Hotmart API check of ``engine doctor`` (when ``HOTMART_SYNC_ENABLED``): the credentials
work, i.e. a token is obtained and one page of subscriptions is read (read calls only)."""

from __future__ import annotations

import httpx

from connectors.errors import WireError
from connectors.hotmart_api import HotmartApi
from engine.doctor.core import FAIL, OK, Check
from engine.settings import Settings

AREA = "hotmart"
TITLE = "Hotmart API credentials"
# A preflight waits a little for Hotmart's rate limit, never the minutes a sync may wait.
MAX_RATE_WAIT = 10.0
TIMEOUT = 15.0


def hotmart_api_checks(settings: Settings, transport: httpx.BaseTransport | None = None) -> list[Check]:
    if missing := settings.missing_hotmart_credentials():
        return [
            Check(
                AREA,
                FAIL,
                f"{TITLE}: {', '.join(missing)} not set: copy them from Hotmart "
                "(Tools > Developer Credentials; the Basic token is shown beside the secret)",
            )
        ]
    api = HotmartApi.from_settings(settings, transport, timeout=TIMEOUT, max_rate_wait=MAX_RATE_WAIT)
    try:
        summary = api.check()
    except WireError as exc:
        return [Check(AREA, FAIL, f"{TITLE}: {exc.detail}")]
    finally:
        api.close()
    return [Check(AREA, OK, f"{TITLE}: {summary}")]
