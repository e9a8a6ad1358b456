"""Admin API answers 422, never 500, to hostile parameters; the docs are not public in production
(issue 10, outcome 6). On the real PostgreSQL."""

from __future__ import annotations

import base64

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from engine.api.app import create_app
from tests.conftest import ADMIN_TOKEN

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
HUGE = str(2**63)


@pytest.fixture
def client(make_harness):
    return TestClient(create_app(make_harness().runtime))


def assert_validation_error(response, name: str) -> None:
    """422 with the body FastAPI's schema declares (HTTPValidationError): detail[] of {loc, msg, type}."""
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, list) and detail
    assert all(isinstance(e["loc"], list) and isinstance(e["msg"], str) and isinstance(e["type"], str) for e in detail)
    assert any(e["loc"][-1] == name for e in detail), detail


@pytest.mark.parametrize(
    ("method", "path", "params", "name"),
    [
        ("get", "/admin/events", {"offset": HUGE}, "offset"),
        ("get", "/admin/students", {"offset": HUGE}, "offset"),
        ("get", "/admin/alerts", {"offset": HUGE}, "offset"),
        ("get", "/admin/reconcile/runs", {"offset": HUGE}, "offset"),
        ("get", "/admin/sync/hotmart/runs", {"offset": HUGE}, "offset"),
        ("get", "/admin/sync/hotmart/runs", {"limit": 101}, "limit"),
        ("get", "/admin/sync/hotmart/runs", {"limit": "1e3"}, "limit"),
        ("get", f"/admin/events/{HUGE}", {}, "event_id"),
        ("post", f"/admin/events/{HUGE}/retry", {}, "event_id"),
        ("post", f"/admin/alerts/{HUGE}/ack", {}, "alert_id"),
        ("get", "/admin/students", {"stuck_days": 15175848}, "stuck_days"),
        ("get", "/admin/events", {"since": "0001-01-01T00:00:00+01:00"}, "since"),
        ("get", "/admin/events", {"until": "9999-12-31T23:59:59-01:00"}, "until"),
        # ISO 8601 only, as the schema's date-time says: not a Unix timestamp
        ("get", "/admin/events", {"until": "0.5"}, "until"),
        ("get", "/admin/events", {"since": "1700000000"}, "since"),
        ("get", f"/admin/events/{2**53}", {}, "event_id"),  # ids a JSON client reads exactly
    ],
)
def test_out_of_range_numbers_and_dates_are_422(client, method, path, params, name):
    assert_validation_error(client.request(method, path, params=params, headers=AUTH), name)


@pytest.mark.parametrize("bad", ["a\x00b", "tab\there", "bell\x07", "del\x7f"])
@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/admin/events?type={}", "type"),
        ("/admin/events?email={}", "email"),
        ("/admin/students?state={}", "state"),
        ("/admin/students?product={}", "product"),
        ("/admin/students/{}", "email"),
    ],
)
def test_nul_and_control_characters_are_refused_in_text_filters_and_paths(client, path, name, bad):
    from urllib.parse import quote

    response = client.get(path.format(quote(bad, safe="")), headers=AUTH)
    assert_validation_error(response, name)


def test_nul_in_the_new_code_path_is_422(client):
    response = client.post("/admin/students/a%00b%40example.com/code", params={"product": "curso"}, headers=AUTH)
    assert_validation_error(response, "email")


@pytest.mark.parametrize(
    ("path", "params", "name"),
    [
        ("/admin/events", {"status": "bogus"}, "status"),
        ("/admin/alerts", {"acknowledged": "x"}, "acknowledged"),
        ("/admin/students", {"state": "bogus"}, "state"),
        ("/admin/students", {"product": "bogus"}, "product"),
        ("/admin/students", {"product": ""}, "product"),
        ("/admin/students", {"state": ""}, "state"),
    ],
)
def test_every_enumerated_filter_answers_the_same_422(client, path, params, name):
    assert_validation_error(client.get(path, params=params, headers=AUTH), name)


def test_the_schema_lists_the_states_and_products_the_rules_define(client):
    rules = client.app.state.runtime.rules.rules
    operation = client.get("/openapi.json").json()["paths"]["/admin/students"]["get"]
    enums = {p["name"]: p["schema"].get("enum") for p in operation["parameters"]}
    assert enums["state"] == sorted(rules.states)
    assert enums["product"] == sorted(rules.products) and "curso" in enums["product"]


def test_the_schema_declares_every_answer_and_what_a_body_must_be(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert "401" in paths["/metrics"]["get"]["responses"]
    assert client.get("/metrics").status_code == 401
    assert "400" in paths["/admin/replay"]["post"]["responses"]
    response = client.post("/admin/replay", content=b"\xc3\x28", headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert paths["/webhooks/hotmart"]["post"]["requestBody"]["required"] is True


def test_known_enumerated_values_still_answer(client):
    assert (
        client.get("/admin/students", params={"state": "active", "product": "curso"}, headers=AUTH).status_code == 200
    )
    assert client.get("/admin/alerts", params={"acknowledged": "any"}, headers=AUTH).status_code == 200


# --- the docs ----------------------------------------------------------------------------


def production_client(make_harness, **overrides) -> TestClient:
    harness = make_harness()
    settings = harness.runtime.settings.model_copy(
        update={"environment": "production", "admin_api_token": SecretStr(ADMIN_TOKEN), **overrides}
    )
    harness.runtime.settings = settings
    return TestClient(create_app(harness.runtime))


def test_docs_are_behind_the_admin_token_in_production(make_harness):
    client = production_client(make_harness)
    for path in ("/docs", "/openapi.json"):
        refused = client.get(path)
        assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Basic")
        assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get(path, headers=AUTH).status_code == 200
        basic = base64.b64encode(f"admin:{ADMIN_TOKEN}".encode()).decode()
        assert client.get(path, headers={"Authorization": f"Basic {basic}"}).status_code == 200
    assert "/admin/events" in client.get("/openapi.json", headers=AUTH).json()["paths"]
    assert client.get("/redoc").status_code == 404


def test_docs_can_be_switched_off(make_harness):
    client = production_client(make_harness, api_docs="off")
    for path in ("/docs", "/openapi.json", "/redoc"):
        assert client.get(path, headers=AUTH).status_code == 404


def test_docs_are_public_in_development(client):
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/docs").status_code == 200


@pytest.mark.parametrize(
    ("body", "name"),
    [
        ({"event_ids": [2**63]}, 0),
        ({"event_ids": [0]}, 0),
        ({"type": "a\x00b"}, "type"),
        ({"since": "0001-01-01T00:00:00+01:00"}, "since"),
        ({"status": "bogus"}, "status"),
        # JSON types as the schema declares them: no 0 for false, no true for 1, no timestamp for a date
        ({"dry_run": 0}, "dry_run"),
        ({"event_ids": [True]}, 0),
        ({"since": 0.5}, "since"),
        ({"event_ids": [2**53]}, 0),
    ],
)
def test_the_replay_body_is_bounded_too(client, body, name):
    assert_validation_error(client.post("/admin/replay", json=body, headers=AUTH), name)
