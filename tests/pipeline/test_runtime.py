"""The connectors as the service builds them (``build_connectors``), not as a test builds them."""

from __future__ import annotations

import ssl

import pytest

from connectors._http import tls_context
from connectors.base import Step, StepContext, StepStatus, StudentRef
from engine.metrics import connector_counters
from engine.pipeline.runtime import build_connectors
from engine.settings import Settings

REFUSED = "http://127.0.0.1:1"  # nothing listens there: the connection is refused


def _settings(**overrides) -> Settings:
    return Settings(
        ENGINE_ENV="test",
        discord_enabled=True,
        discord_bot_token="bot-token",
        discord_guild_id="1",
        discord_api_base=REFUSED,
        manychat_enabled=True,
        manychat_api_token="manychat-token",
        manychat_api_base=REFUSED,
        **overrides,
    )


def test_a_flow_whose_connection_is_refused_was_never_in_flight_and_is_counted():
    """The service wraps each connector's transport to count its calls; the ManyChat flow must
    still be marked in flight only when its request is written (not before connecting), or a
    worker stopped while ManyChat is unreachable leaves a flow that was never sent as 'maybe
    delivered', never resent."""
    settings = _settings()
    registry, _ = build_connectors(settings)
    counters = connector_counters(settings)
    errors_before = counters.snapshot().get("manychat|error|ConnectError", 0)
    marked: list[str] = []
    student = StudentRef(id=1, email="ana@example.com", manychat_subscriber_id="900000001")
    context = StepContext(
        student=student, event_id=1, event_type="purchase_approved", before_send=lambda: marked.append("in flight")
    )
    try:
        result = registry["trigger_flow"].run(Step("trigger_flow", {"flow": "boas-vindas", "flow_ns": "ns1"}), context)
    finally:
        registry["trigger_flow"].close()
        registry["add_role"].close()
    assert result.status is StepStatus.FAILED and result.retryable and not result.maybe_delivered, result
    assert marked == []
    assert counters.snapshot()["manychat|error|ConnectError"] == errors_before + 1


def test_the_service_connectors_share_one_tls_context(monkeypatch: pytest.MonkeyPatch):
    """Building a verified TLS context reads the whole CA bundle (tens of ms of CPU): a process
    builds one, whatever it connects to."""
    tls_context()
    loads: list[object] = []
    load = ssl.SSLContext.load_verify_locations
    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", lambda *a, **k: loads.append(a) or load(*a, **k))
    registry, _ = build_connectors(_settings())
    registry["trigger_flow"].close()
    registry["add_role"].close()
    assert loads == []


def test_the_course_webhook_runs_the_class_steps_only_when_its_flag_is_on():
    """Off, no connector runs enroll/unenroll (the engine's table alone, execution.py); on, the
    classes connector does, its calls counted like the others'."""
    off, _ = build_connectors(_settings())
    assert "enroll" not in off and "unenroll" not in off
    off["trigger_flow"].close()
    off["add_role"].close()

    settings = _settings(
        course_webhook_enabled=True, course_webhook_url=f"{REFUSED}/webhooks", course_webhook_secret="whsec_c2VjcmV0"
    )
    registry, _ = build_connectors(settings)
    counters = connector_counters(settings)
    errors_before = counters.snapshot().get("classes|error|ConnectError", 0)
    assert registry["enroll"] is registry["unenroll"] and registry["enroll"].name == "classes"
    context = StepContext(student=StudentRef(id=1, email="ana@example.com"), event_id=1, action_run_id=5)
    try:
        result = registry["enroll"].run(Step("enroll", {"classes": ["curso-2026"]}), context)
    finally:
        for action in ("enroll", "trigger_flow", "add_role"):
            registry[action].close()
    assert (result.error, result.retryable) == ("classes.unavailable", True)
    assert counters.snapshot()["classes|error|ConnectError"] == errors_before + 1
