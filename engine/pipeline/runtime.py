"""Everything the pipeline needs, built once per process; tests build their own."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from connectors.base import Connector, Step, StepContext, StepResult, StepStatus
from engine.db.models import utcnow
from engine.db.session import engine_of, session_factory
from engine.pipeline.queue import NoQueue, TaskQueue
from engine.pipeline.rules_repository import RulesRepository
from engine.rules.actions import CLASSES, DISCORD, MANYCHAT, run_by
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
    # Where the pipeline queues its work (process an event, retry a student's steps, hand off to a lane).
    queue: TaskQueue = field(default_factory=NoQueue)
    clock: Callable[[], datetime] = utcnow
    alert_sink: Connector | None = None  # has post_alert(content, nonce=)
    db: Engine = field(init=False)  # the pool ``sessions`` is bound to: bare connections on the hot path
    # Connector name -> the lane (queue) its steps run in; none: every thread runs them.
    lanes: dict[str, str] = field(default_factory=dict)
    # Set when the process is asked to stop: waits end early, unfinished work stays in the database.
    stopping: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.db = engine_of(self.sessions)

    def lane_for(self, connector: Connector) -> str | None:
        return self.lanes.get(connector.name)

    def now(self) -> datetime:
        return self.clock()

    def connector_for(self, action: str) -> Connector | None:
        return self.connectors.get(action)


def build_connectors(settings: Settings) -> tuple[dict[str, Connector], Connector]:
    """Connectors by action, honouring the feature flags; plus the admin-alert sink."""
    from connectors.throttle import LocalLimiter, RedisLimiter
    from engine.metrics import CountingTransport, connector_counters

    # One budget per outside service for every worker process: in Redis when there is one.
    limiter = RedisLimiter.from_url(settings.redis_url, settings.queue_name) if settings.redis_url else LocalLimiter()
    counters = connector_counters(settings)
    registry: dict[str, Connector] = {}
    discord_actions, manychat_actions = run_by(DISCORD), run_by(MANYCHAT)
    if settings.discord_enabled:
        from connectors.discord import DiscordConnector

        discord: Connector = DiscordConnector(
            settings.discord_bot_token.get_secret_value(),
            settings.discord_guild_id,
            api_base=settings.discord_api_base,
            alert_channel_id=settings.discord_alert_channel_id,
            global_rate=settings.discord_global_rate,
            limiter=limiter,
            wrap_transport=lambda network: CountingTransport("discord", counters, network),
        )
    else:
        discord = DisabledConnector("discord", discord_actions, "DISCORD_ENABLED")
    if settings.manychat_enabled:
        from connectors.manychat import ManyChatConnector

        manychat: Connector = ManyChatConnector(
            settings.manychat_api_token.get_secret_value(),
            api_base=settings.manychat_api_base,
            wrap_transport=lambda network: CountingTransport("manychat", counters, network),
            limiter=limiter,
        )
    else:
        manychat = DisabledConnector("manychat", manychat_actions, "MANYCHAT_ENABLED")
    for connector, actions in ((discord, discord_actions), (manychat, manychat_actions)):
        for action in actions:
            registry[action] = connector
    if settings.course_webhook_enabled:
        # Off, no connector runs the class steps: the engine's own table alone (execution.py).
        from connectors.classes import ClassesConnector

        classes = ClassesConnector(
            settings.course_webhook_url,
            settings.course_webhook_secret.get_secret_value(),
            enrollments_url=settings.course_enrollments_url,
            wrap_transport=lambda network: CountingTransport("classes", counters, network),
        )
        for action in run_by(CLASSES):
            registry[action] = classes
    return registry, discord


def build_runtime(
    settings: Settings,
    *,
    queue: TaskQueue | None = None,
    sessions: sessionmaker[Session] | None = None,
) -> Runtime:
    sessions = sessions or session_factory(settings)
    # Invalid rules do not stop a process: the API stores webhooks without them, the worker
    # holds events (needs_attention) until valid rules load.
    rules = RulesRepository(settings.rules_dir, strict=False)
    connectors, alert_sink = build_connectors(settings)
    return Runtime(
        settings=settings,
        sessions=sessions,
        rules=rules,
        connectors=connectors,
        queue=queue if queue is not None else NoQueue(),
        alert_sink=alert_sink,
    )
