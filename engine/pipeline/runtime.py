"""Everything the pipeline needs, built once per process; tests build their own."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from connectors.base import Connector, Step, StepContext, StepResult, StepStatus
from engine.db.models import utcnow
from engine.rules.repository import RulesRepository
from engine.settings import Settings

log = logging.getLogger(__name__)


class DisabledConnector:
    """Stands in for a connector whose feature flag is off: steps are skipped, never done."""

    def __init__(self, name: str, actions: frozenset[str], flag: str):
        self.name, self.actions, self.flag = name, actions, flag

    def run(self, step: Step, ctx: StepContext) -> StepResult:
        return StepResult(StepStatus.SKIPPED, error="flag.disabled", detail=f"{self.flag} is off")

    def post_alert(self, content: str, *, nonce: str | None = None) -> StepResult:
        return StepResult(StepStatus.SKIPPED, error="flag.disabled", detail=f"{self.flag} is off")


@dataclass
class Runtime:
    settings: Settings
    sessions: sessionmaker[Session]
    rules: RulesRepository
    connectors: dict[str, Connector]  # by action
    enqueue: Callable[[int], None] = lambda event_id: None  # run process_event(event_id) soon
    schedule_drain: Callable[[int, float], None] = lambda student_id, delay: None
    clock: Callable[[], datetime] = utcnow
    alert_sink: Connector | None = None  # has post_alert(content, nonce=)
    extra: dict = field(default_factory=dict)

    def now(self) -> datetime:
        return self.clock()

    def connector_for(self, action: str) -> Connector | None:
        return self.connectors.get(action)


def build_connectors(
    settings: Settings, sessions: sessionmaker[Session], class_names: dict[str, str] | None = None
) -> tuple[dict[str, Connector], Connector]:
    """Connectors by action, honouring the feature flags; plus the admin-alert sink."""
    from connectors.classes import ClassesConnector

    registry: dict[str, Connector] = {}
    discord_actions = frozenset({"add_role", "remove_role", "send_dm"})
    manychat_actions = frozenset({"add_tag", "remove_tag", "set_field", "trigger_flow"})
    if settings.discord_enabled:
        from connectors.discord import DiscordConnector

        discord: Connector = DiscordConnector(
            settings.discord_bot_token.get_secret_value(),
            settings.discord_guild_id,
            api_base=settings.discord_api_base,
            alert_channel_id=settings.discord_alert_channel_id,
        )
    else:
        discord = DisabledConnector("discord", discord_actions, "DISCORD_ENABLED")
    if settings.manychat_enabled:
        from connectors.manychat import ManyChatConnector

        manychat: Connector = ManyChatConnector(
            settings.manychat_api_token.get_secret_value(), api_base=settings.manychat_api_base
        )
    else:
        manychat = DisabledConnector("manychat", manychat_actions, "MANYCHAT_ENABLED")
    classes = ClassesConnector(sessions, class_names)
    for connector in (discord, manychat, classes):
        for action in connector.actions:
            registry[action] = connector
    return registry, discord


def build_runtime(
    settings: Settings,
    *,
    enqueue: Callable[[int], None] | None = None,
    schedule_drain: Callable[[int, float], None] | None = None,
    sessions: sessionmaker[Session] | None = None,
) -> Runtime:
    from engine.db.session import session_factory

    sessions = sessions or session_factory(settings)
    # Invalid rules do not stop a process: the API stores webhooks without them, the worker
    # holds events (needs_attention) until valid rules load.
    rules = RulesRepository(settings.rules_dir, strict=False)
    connectors, alert_sink = build_connectors(settings, sessions, rules.rules.classes if rules.available else {})
    runtime = Runtime(settings=settings, sessions=sessions, rules=rules, connectors=connectors, alert_sink=alert_sink)
    if enqueue is not None:
        runtime.enqueue = enqueue
    if schedule_drain is not None:
        runtime.schedule_drain = schedule_drain
    return runtime
