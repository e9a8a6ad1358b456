"""``engine doctor`` and ``GET /admin/doctor`` put together: our side, then each service asked for."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpx

from engine.doctor.core import (
    FAIL,
    OK,
    Check,
    connection_budget_check,
    database_checks,
    database_connection,
    queue_check,
    rules_check,
    secret_checks,
    stuck_check,
    worker_rules_check,
)
from engine.doctor.course_platform import course_platform_checks
from engine.doctor.discord import DiscordDoctor
from engine.doctor.hotmart import hotmart_api_checks
from engine.doctor.manychat import ManyChatDoctor
from engine.rules.model import Rules
from engine.settings import Settings


def run_doctor(
    settings: Settings,
    rules: Rules | None,
    *,
    discord: bool | None = None,
    manychat: bool | None = None,
    course: bool | None = None,
    hotmart: bool | None = None,
    engine_checks: Iterable[Check] = (),
    transport: httpx.BaseTransport | None = None,
) -> list[Check]:
    """Every check; ``discord``/``manychat``/``course``/``hotmart`` None means "when the flag is on"
    (``hotmart``: HOTMART_SYNC_ENABLED, the API credentials)."""
    checks = list(engine_checks)
    if discord if discord is not None else settings.discord_enabled:
        checks += DiscordDoctor(settings, rules, transport).run()
    if manychat if manychat is not None else settings.manychat_enabled:
        checks += ManyChatDoctor(settings, rules, transport).run()
    if course if course is not None else settings.course_webhook_enabled:
        checks += course_platform_checks(settings, transport, rules)
    if hotmart if hotmart is not None else settings.hotmart_sync_enabled:
        checks += hotmart_api_checks(settings, transport)
    return checks


def preflight(
    settings: Settings,
    rules: Rules | None,
    rule_problems: list[Any],
    *,
    discord: bool | None = None,
    manychat: bool | None = None,
    course: bool | None = None,
    hotmart: bool | None = None,
    transport: httpx.BaseTransport | None = None,
) -> list[Check]:
    """Our side (database, migrations, queue, secrets, rules), then each service asked for."""
    from engine.rules.files import rules_version

    on_disk = rules_version(settings.rules_dir) if rules is not None and not rule_problems else None
    try:
        with database_connection(settings) as connection:
            database = database_checks(connection)
            budget = connection_budget_check(settings, connection)
            workers = worker_rules_check(settings, on_disk, connection)
            migrated = all(check.status == OK for check in database)
            stuck = stuck_check(settings, connection) if migrated else None
    except Exception as exc:  # noqa: BLE001 - any driver error: say it in one line
        database = [Check("engine", FAIL, f"database unreachable ({type(exc).__name__}): check DATABASE_URL")]
        budget = workers = stuck = None
    ours = [
        *database,
        *([budget] if budget else []),
        queue_check(settings),
        *secret_checks(settings),
        rules_check(rules, rule_problems, str(settings.rules_dir)),
        *([workers] if workers else []),
        *([stuck] if stuck else []),
    ]
    return run_doctor(
        settings,
        rules,
        discord=discord,
        manychat=manychat,
        course=course,
        hotmart=hotmart,
        engine_checks=ours,
        transport=transport,
    )
