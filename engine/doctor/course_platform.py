"""The course platform's checks of ``engine doctor``: the webhook's secret is set and usable, and
its URL answers. Read-only: one GET to the URL (a receiver of POSTs typically answers it 405, which
proves something listens there); no message is signed or sent."""

from __future__ import annotations

import httpx

from connectors.course_platform import SECRET_PREFIX, signing_key
from engine.doctor.core import FAIL, OK, WARN, Check
from engine.settings import Settings

AREA = "classes"
TIMEOUT = 10.0
MIN_KEY_BYTES = 24  # Standard Webhooks: a symmetric secret of at least 24 random bytes


def course_platform_checks(settings: Settings, transport: httpx.BaseTransport | None = None) -> list[Check]:
    return [*_secret_checks(settings), *_url_checks(settings, transport)]


def _secret_checks(settings: Settings) -> list[Check]:
    secret = settings.course_webhook_secret.get_secret_value()
    if not secret:
        return [Check(AREA, FAIL, "COURSE_WEBHOOK_SECRET is not set: share a whsec_ secret with the course platform")]
    try:
        key = signing_key(secret)
    except ValueError as exc:
        return [Check(AREA, FAIL, f"COURSE_WEBHOOK_SECRET: {exc}")]
    checks = []
    if secret.startswith(SECRET_PREFIX):
        checks.append(Check(AREA, OK, f"COURSE_WEBHOOK_SECRET set (whsec_: a {len(key)}-byte key)"))
    else:
        checks.append(
            Check(
                AREA,
                WARN,
                "COURSE_WEBHOOK_SECRET is plain text: the platform's library must be handed its bytes; "
                "whsec_<base64> is the form every Standard Webhooks library reads as is",
            )
        )
    if len(key) < MIN_KEY_BYTES:
        checks.append(
            Check(AREA, WARN, f"COURSE_WEBHOOK_SECRET is {len(key)} bytes: use {MIN_KEY_BYTES} or more random bytes")
        )
    return checks


def _url_checks(settings: Settings, transport: httpx.BaseTransport | None) -> list[Check]:
    url = settings.course_webhook_url.strip()
    if not url:
        return [Check(AREA, FAIL, "COURSE_WEBHOOK_URL is not set: the address where the course platform receives")]
    if not url.startswith(("https://", "http://")):
        return [Check(AREA, FAIL, f"COURSE_WEBHOOK_URL {url!r} is not an http(s):// address")]
    checks = []
    if url.startswith("http://") and not settings.development:
        checks.append(Check(AREA, WARN, "COURSE_WEBHOOK_URL is not https: the messages carry students' e-mails"))
    try:
        with httpx.Client(timeout=TIMEOUT, transport=transport, follow_redirects=False) as client:
            response = client.get(url)
    except httpx.HTTPError as exc:
        return [
            *checks,
            Check(AREA, FAIL, f"the course platform did not answer at {url} ({type(exc).__name__}): check it runs"),
        ]
    status = response.status_code
    if status >= 500:
        problem = f"the course platform answered HTTP {status} at {url}: it is failing; check its logs"
    elif 300 <= status < 400:
        where = response.headers.get("location", "?")
        problem = f"{url} redirects to {where}: webhooks do not follow redirects; set COURSE_WEBHOOK_URL to it"
    elif status in (404, 410):
        problem = f"nothing receives webhooks at {url} (HTTP {status}): check COURSE_WEBHOOK_URL"
    else:
        return [*checks, Check(AREA, OK, f"the course platform answers at {url} (HTTP {status} to a GET)")]
    return [*checks, Check(AREA, FAIL, problem)]
