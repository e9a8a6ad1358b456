"""``GET /metrics``: Prometheus text, admin token; the workers' numbers come from the database and Redis."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from connectors.base import StepResult
from engine.api.app import create_app
from engine.db.models import Event
from engine.metrics import ConnectorCounters, CountingTransport, connector_counters
from engine.rules.files import rules_version
from tests.conftest import ADMIN_TOKEN, HOTTOK, RULES, load_payload, rewriting_event_log
from tests.pipeline.test_processing import link

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def scrape(client: TestClient) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics", headers=AUTH)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def post(client: TestClient, body: bytes, token: str = HOTTOK):
    return client.post("/webhooks/hotmart", content=body, headers={"X-HOTMART-HOTTOK": token})


class Failing:
    name = "discord"
    actions = frozenset({"add_role", "remove_role", "send_dm"})

    def run(self, step, ctx) -> StepResult:
        return StepResult.failed("discord.forbidden", "403 Missing Permissions (50013)")


def test_metrics_need_the_admin_token(make_harness):
    client = TestClient(create_app(make_harness().runtime))
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_metrics_count_webhooks_events_steps_alerts_and_ages(make_harness):
    h = make_harness()
    client = TestClient(create_app(h.runtime, queue_check=lambda: 7))
    before = scrape(client)
    assert value(before, "engine_last_webhook_age_seconds") == -1  # none yet
    body = (RULES.parent / "examples/hotmart/purchase_approved.json").read_bytes()
    assert post(client, body).json()["status"] == "accepted"
    assert post(client, body).json()["status"] == "duplicate"
    assert post(client, body, token="wrong").status_code == 401
    assert post(client, b"not json").status_code == 400

    samples = scrape(client)
    for outcome, added in (("accepted", 1), ("duplicate", 1), ("unauthorized", 1), ("rejected", 1)):
        delta = value(samples, "engine_webhooks_total", outcome=outcome) - value(
            before, "engine_webhooks_total", outcome=outcome
        )
        assert delta == added, outcome
    assert value(samples, "engine_webhook_ack_seconds_count") - value(before, "engine_webhook_ack_seconds_count") == 4
    assert value(samples, "engine_events", status="received", type="PURCHASE_APPROVED") == 1
    assert value(samples, "engine_events", status="rejected", type="") == 1
    assert value(samples, "engine_queue_depth") == 7
    assert 0 <= value(samples, "engine_last_webhook_age_seconds") < 60
    assert value(samples, "engine_rules_info", version=rules_version(RULES)) == 1
    assert value(samples, "engine_rules_load_error") == 0

    # Received an hour ago and still not processed: the age says so.
    with h.runtime.sessions.begin() as session, rewriting_event_log(session):
        an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
        session.execute(update(Event).where(Event.status == "received").values(received_at=an_hour_ago))
    assert value(scrape(client), "engine_oldest_unprocessed_event_age_seconds") >= 3600

    # The worker processes it: steps by action and status; nothing left unprocessed.
    assert h.run_queue() == ["processed"]  # the webhook queued it
    samples = scrape(client)
    assert value(samples, "engine_events", status="processed", type="PURCHASE_APPROVED") >= 1
    assert value(samples, "engine_steps", action="add_tag", status="done") >= 1
    assert value(samples, "engine_oldest_unprocessed_event_age_seconds") == 0


def test_a_failed_step_shows_as_an_error_class_and_an_open_alert(make_harness):
    h = make_harness()
    for action in Failing.actions:
        h.runtime.connectors[action] = Failing()
    client = TestClient(create_app(h.runtime))
    h.deliver(load_payload("purchase_approved.json"))
    link(h)  # the student links Discord: add_role is refused, for good
    samples = scrape(client)
    assert value(samples, "engine_step_errors", error="discord.forbidden", status="failed") == 1
    assert value(samples, "engine_steps", action="add_role", status="failed") == 1
    assert value(samples, "engine_events", status="failed", type="DISCORD_LINKED") == 1
    assert value(samples, "engine_alerts_open") == 1


def test_counting_transport_counts_calls_429s_and_transport_errors():
    counters = ConnectorCounters()
    answers = iter([httpx.Response(200), httpx.Response(429), httpx.Response(404)])

    def handler(request: httpx.Request) -> httpx.Response:
        answer = next(answers, None)
        if answer is None:
            raise httpx.ConnectTimeout("timed out", request=request)
        return answer

    client = httpx.Client(transport=CountingTransport("discord", counters, httpx.MockTransport(handler)))
    for _ in range(3):
        client.get("https://discord.test/x")
    with pytest.raises(httpx.ConnectTimeout):
        client.get("https://discord.test/x")
    assert counters.snapshot() == {
        "discord|calls|2xx": 1,
        "discord|calls|4xx": 2,
        "discord|rate_limited|": 1,
        "discord|error|ConnectTimeout": 1,
    }


def test_connector_counts_reach_the_api_through_redis(make_harness, redis_url):
    """A worker process counts into Redis; the API (another process) reads the same hash."""
    h = make_harness(redis_url=redis_url)
    key = f"{os.environ['QUEUE_NAME']}:metrics"
    worker_side = ConnectorCounters(redis_url, key)
    worker_side.incr("manychat|rate_limited|")
    worker_side.incr("manychat|calls|2xx")
    assert connector_counters(h.runtime.settings) is not worker_side  # the API's own store
    samples = scrape(TestClient(create_app(h.runtime)))
    assert value(samples, "engine_connector_rate_limited_total", connector="manychat") == 1
    assert value(samples, "engine_connector_http_requests_total", connector="manychat", status="2xx") == 1


def test_invalid_rules_on_disk_show_as_a_load_error_while_the_last_version_runs(make_harness, tmp_path):
    import shutil

    rules_dir = tmp_path / "rules"
    shutil.copytree(RULES, rules_dir)
    h = make_harness(rules_dir=rules_dir)
    client = TestClient(create_app(h.runtime))
    version = h.runtime.rules.version
    lifecycle = rules_dir / "lifecycle.yaml"
    lifecycle.write_text(lifecycle.read_text(encoding="utf-8").replace("do: [add_role]", "do: [add_rol]"))
    h.runtime.rules.reload()
    samples = scrape(client)
    assert value(samples, "engine_rules_load_error") == 1
    assert value(samples, "engine_rules_info", version=version) == 1
