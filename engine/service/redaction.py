"""Secrets never leave a read model: the hottok and the other configured tokens are redacted
wherever they could appear (a payload, a header, a step's result, a reason), and onboarding codes
are never shown (only when they were issued and expire).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.db.models import ActionRun, OnboardingToken
from engine.rules.action_types import TOKEN_PLACEHOLDER
from engine.rules.actions import ACTIONS
from engine.settings import Settings

REDACTED = "[redacted]"
# Keys whose values are credentials wherever they appear (a payload, a header, a result).
_SECRET_KEYS = frozenset({"hottok", "x-hotmart-hottok", "authorization", "cookie", "set-cookie"})
# A form-encoded or broken-JSON body may carry the hottok; redact its value in text.
_HOTTOK_IN_TEXT = re.compile(r"""(hottok["']?\s*[=:]\s*["']?)[^&"'\s,}]*""", re.IGNORECASE)


class Redactor:
    """Replaces known secret strings (configured tokens, onboarding codes) and secret keys."""

    def __init__(self, secrets: Iterable[str | None] = ()):
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    @classmethod
    def for_settings(cls, settings: Settings, extra: Iterable[str | None] = ()) -> Redactor:
        configured = (
            settings.hotmart_hottok,
            settings.kiwify_token,
            settings.eduzz_secret,
            settings.admin_api_token,
            settings.discord_bot_token,
            settings.manychat_api_token,
        )
        return cls([*(s.get_secret_value() for s in configured), *extra])

    def text(self, value: str | None) -> str | None:
        if not value:
            return value
        for secret in self.secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return _HOTTOK_IN_TEXT.sub(lambda m: m.group(1) + REDACTED, value) if "hottok" in value.lower() else value

    def __call__(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {
                key: REDACTED if isinstance(key, str) and key.lower() in _SECRET_KEYS else self(item)
                for key, item in value.items()
            }
        if isinstance(value, list | tuple):
            return [self(item) for item in value]
        return value


def student_codes(session: Session, student_ids: Iterable[int | None]) -> list[str]:
    """Every code the students were ever issued (open or not): a step's params or result may name one."""
    ids = {i for i in student_ids if i is not None}
    if not ids:
        return []
    return list(session.scalars(select(OnboardingToken.code).where(OnboardingToken.student_id.in_(ids))))


def planned_codes(runs: Sequence[ActionRun], plans: Any) -> list[str]:
    """Secret parameters (the code an issue_token step carries), whether or not the step has run yet."""
    steps: list[tuple[Any, Any]] = [(run.action, run.params) for run in runs]
    for plan in plans if isinstance(plans, list) else []:
        planned = plan.get("steps") if isinstance(plan, dict) else None
        for step in planned if isinstance(planned, list) else []:
            if isinstance(step, dict):
                steps.append((step.get("action"), step.get("params")))
    codes = []
    for action, params in steps:
        if isinstance(action, str) and action in ACTIONS and isinstance(params, dict):
            codes += [params.get(name) for name in ACTIONS[action].secret_params]
    return [c for c in codes if isinstance(c, str) and c != TOKEN_PLACEHOLDER]
