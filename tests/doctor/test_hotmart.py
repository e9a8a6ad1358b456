"""`engine doctor` for Hotmart's API (HOTMART_SYNC_ENABLED): the credentials obtain a token and read
one page of subscriptions, against the fake Hotmart API; what is missing or refused is named."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.doctor.conftest import World, doctor, lines
from tests.fakes import hotmart_api_app
from tests.fakes.server import serve


@pytest.fixture
def hotmart(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[hotmart_api_app.FakeHotmartApi, str]]:
    app = hotmart_api_app.create_app()
    with serve(app) as url:
        monkeypatch.setenv("HOTMART_CLIENT_ID", hotmart_api_app.CLIENT_ID)
        monkeypatch.setenv("HOTMART_CLIENT_SECRET", hotmart_api_app.CLIENT_SECRET)
        monkeypatch.setenv("HOTMART_BASIC", f"Basic {hotmart_api_app.basic_token()}")
        monkeypatch.setenv("HOTMART_AUTH_URL", f"{url}{hotmart_api_app.TOKEN_PATH}")
        monkeypatch.setenv("HOTMART_API_BASE", url)
        yield app.state.fake, url


def hotmart_lines(result) -> list[str]:
    return [line for line in result.stdout.splitlines() if " hotmart " in line]


def test_good_credentials_pass_with_a_token_and_one_page_read(world: World, hotmart, monkeypatch):
    fake, url = hotmart
    fake.store.add_subscription("4242001", "ana@example.com")
    monkeypatch.setenv("HOTMART_SYNC_ENABLED", "true")
    result = doctor()
    assert result.exit_code == 0, result.stdout
    assert hotmart_lines(result) == [
        "ok    hotmart   Hotmart API credentials: token obtained and 1 subscription(s) of the last 30 days "
        f"read at {url}"
    ]
    assert fake.tokens_issued == 1 and [q["max_results"] for q in fake.queries("/payments/api/v1/subscriptions")] == [
        ["1"]
    ]


def test_missing_credentials_are_named_without_asking_hotmart(world: World, hotmart, monkeypatch):
    fake, _ = hotmart
    monkeypatch.setenv("HOTMART_SYNC_ENABLED", "true")
    monkeypatch.delenv("HOTMART_CLIENT_SECRET")
    monkeypatch.setenv("HOTMART_BASIC", "")
    result = doctor()
    assert result.exit_code == 1
    assert hotmart_lines(result) == [
        "FAIL  hotmart   Hotmart API credentials: HOTMART_CLIENT_SECRET, HOTMART_BASIC not set: copy them from "
        "Hotmart (Tools > Developer Credentials; the Basic token is shown beside the secret)"
    ]
    assert fake.tokens_issued == 0


def test_refused_credentials_say_what_to_check_and_never_the_secret(world: World, hotmart, monkeypatch):
    fake, _ = hotmart
    monkeypatch.setenv("HOTMART_SYNC_ENABLED", "true")
    monkeypatch.setenv("HOTMART_CLIENT_SECRET", "a-wrong-secret-0123456789")
    result = doctor()
    assert result.exit_code == 1
    [line] = lines(result, "FAIL")
    assert line.startswith(
        "FAIL  hotmart   Hotmart API credentials: Hotmart refused the API credentials (HTTP 401: invalid_client; "
        "Bad client credentials); check HOTMART_CLIENT_ID, HOTMART_CLIENT_SECRET and HOTMART_BASIC"
    )
    assert "a-wrong-secret" not in result.stdout and hotmart_api_app.basic_token() not in result.stdout


def test_an_unreachable_api_and_the_flag_off(world: World, hotmart, monkeypatch):
    fake, url = hotmart
    off = doctor()
    assert off.exit_code == 0 and not hotmart_lines(off)
    assert "the Hotmart API — its flag is off; pass --discord/--manychat/--course/--hotmart" in off.stdout
    fake.fail(503, times=5)
    asked = doctor("--hotmart")  # the flag is off: asked for explicitly
    assert hotmart_lines(asked) == [
        "FAIL  hotmart   Hotmart API credentials: reading one page of subscriptions: Hotmart answered HTTP 503: "
        "fake_503; fake"
    ]


def test_the_admin_doctor_route_reports_the_hotmart_api(world: World, hotmart, make_harness):
    from fastapi.testclient import TestClient

    from engine.api.app import create_app
    from tests.conftest import ADMIN_TOKEN

    _, url = hotmart
    h = make_harness(
        hotmart_client_id=hotmart_api_app.CLIENT_ID,
        hotmart_client_secret=hotmart_api_app.CLIENT_SECRET,
        hotmart_basic=hotmart_api_app.basic_token(),
        hotmart_auth_url=f"{url}{hotmart_api_app.TOKEN_PATH}",
        hotmart_api_base=url,
    )
    client = TestClient(create_app(h.runtime))
    report = client.get("/admin/doctor", params={"hotmart": "true"}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert report.status_code == 200, report.text
    assert {
        "area": "hotmart",
        "status": "ok",
        "message": f"Hotmart API credentials: token obtained and 0 subscription(s) of the last 30 days read at {url}",
    } in report.json()["checks"]
