"""Alerts posted to the Discord admin channel read as the message, without internal labels."""

from __future__ import annotations

from connectors.base import StepResult
from engine.pipeline.alerts import notify_alerts
from tests.conftest import load_payload


class AlertChannel:
    def __init__(self) -> None:
        self.posted: list[tuple[str, str | None]] = []

    def post_alert(self, content: str, *, nonce: str | None = None) -> StepResult:
        self.posted.append((content, nonce))
        return StepResult.done("posted")


def test_a_rules_alert_is_posted_without_its_kind_label(make_harness):
    h = make_harness()
    channel = AlertChannel()
    h.runtime.alert_sink = channel
    h.deliver(load_payload("purchase_approved_subscription_first.json"))
    h.deliver(load_payload("purchase_chargeback.json"))
    notify_alerts(h.runtime)  # the worker posts after each event; posting again sends nothing new
    [(content, nonce)] = channel.posted
    assert content.startswith("⚠️ Chargeback de ana.exemplo@example.com em ")
    assert "[" not in content and "rules.alert" not in content
    assert nonce is not None and nonce.startswith("alert-")
