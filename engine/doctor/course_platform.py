"""The course platform's checks of ``engine doctor``: the webhook's secret is set and usable, and
its URL answers. Read-only: one GET to the URL (a receiver of POSTs typically answers it 405, which
proves something listens there); no message is signed or sent. With COURSE_ENROLLMENTS_URL set, one
signed read of a class's enrollments, as reconcile makes them (its first page; tried again at once)."""

from __future__ import annotations

import httpx

from connectors.course_platform import SECRET_PREFIX, signing_key
from engine.doctor.core import FAIL, OK, WARN, Check
from engine.rules.model import Rules
from engine.settings import Settings

AREA = "classes"
TIMEOUT = 10.0
MIN_KEY_BYTES = 24  # Standard Webhooks: a symmetric secret of at least 24 random bytes
PROBE_CLASS = "engine-doctor"  # read when the rules name no class: the contract answers it an empty list


def course_platform_checks(
    settings: Settings, transport: httpx.BaseTransport | None = None, rules: Rules | None = None
) -> list[Check]:
    """The secret, the webhook URL and, when set, the enrollments URL (``rules``: the class it reads)."""
    return [
        *_secret_checks(settings),
        *_url_checks(settings, transport),
        *_enrollments_checks(settings, transport, rules),
    ]


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


def _enrollments_checks(settings: Settings, transport: httpx.BaseTransport | None, rules: Rules | None) -> list[Check]:
    """COURSE_ENROLLMENTS_URL, when set: one signed read of a class the rules name, judged as reconcile
    judges it. Nothing when the secret cannot sign (its own check fails already)."""
    from connectors.classes import ClassesConnector
    from connectors.errors import WireError

    url = settings.course_enrollments_url.strip()
    if not url:
        return []
    if not url.startswith(("https://", "http://")):
        return [Check(AREA, FAIL, f"COURSE_ENROLLMENTS_URL {url!r} is not an http(s):// address")]
    try:
        signing_key(settings.course_webhook_secret.get_secret_value())
    except ValueError:
        return []
    checks = []
    if url.startswith("http://") and not settings.development:
        checks.append(Check(AREA, WARN, "COURSE_ENROLLMENTS_URL is not https: the enrollments carry students' e-mails"))
    key = min(rules.classes) if rules is not None and rules.classes else PROBE_CLASS
    reader = ClassesConnector(
        settings.course_webhook_url,
        settings.course_webhook_secret.get_secret_value(),
        enrollments_url=url,
        transport=transport,
        timeout=TIMEOUT,
        sleep=lambda _: None,
    )
    try:
        first = next(iter(reader.list_enrollments(key)), None)
    except WireError as exc:
        return [*checks, Check(AREA, FAIL, f"COURSE_ENROLLMENTS_URL: {exc.detail}")]
    finally:
        reader.close()
    held = "holds enrollments" if first is not None else "holds none yet"
    return [*checks, Check(AREA, OK, f"the course platform serves enrollments at {url} (a signed read: {key} {held})")]
