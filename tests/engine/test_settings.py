"""The one settings class refuses unsafe values and names what is missing."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from engine.settings import Settings


def test_production_refuses_missing_secrets_and_names_them(monkeypatch):
    monkeypatch.delenv("HOTMART_HOTTOK", raising=False)
    monkeypatch.delenv("ADMIN_API_TOKEN", raising=False)
    with pytest.raises(ValidationError, match="HOTMART_HOTTOK, ADMIN_API_TOKEN must be set"):
        Settings(ENGINE_ENV="production", _env_file=None)
    with pytest.raises(ValidationError, match="ADMIN_API_TOKEN must be set") as caught:
        Settings(ENGINE_ENV="production", hotmart_hottok="x", _env_file=None)
    assert "HOTMART_HOTTOK" not in str(caught.value)


def test_development_runs_without_secrets_on_sqlite(tmp_path):
    settings = Settings(ENGINE_ENV="development", var_dir=tmp_path, _env_file=None)
    assert settings.sqlalchemy_url == f"sqlite:///{tmp_path}/engine.db"
    assert not settings.discord_enabled and not settings.manychat_enabled and settings.hotmart_enabled


def test_enabling_a_connector_requires_its_credentials():
    with pytest.raises(ValidationError, match="DISCORD_ENABLED needs DISCORD_BOT_TOKEN and DISCORD_GUILD_ID"):
        Settings(ENGINE_ENV="test", discord_enabled=True, _env_file=None)
    with pytest.raises(ValidationError, match="MANYCHAT_ENABLED needs MANYCHAT_API_TOKEN"):
        Settings(ENGINE_ENV="test", manychat_enabled=True, _env_file=None)


def test_the_course_webhook_needs_an_address_and_a_usable_secret():
    with pytest.raises(
        ValidationError, match="COURSE_WEBHOOK_ENABLED needs COURSE_WEBHOOK_URL and COURSE_WEBHOOK_SECRET"
    ):
        Settings(ENGINE_ENV="test", course_webhook_enabled=True, _env_file=None)
    url = "https://course.example.com/webhooks"
    with pytest.raises(ValidationError, match="COURSE_WEBHOOK_ENABLED needs COURSE_WEBHOOK_SECRET"):
        Settings(ENGINE_ENV="test", course_webhook_enabled=True, course_webhook_url=url, _env_file=None)
    with pytest.raises(ValidationError, match="COURSE_WEBHOOK_URL 'course.example.com': an http"):
        Settings(
            ENGINE_ENV="test",
            course_webhook_enabled=True,
            course_webhook_url="course.example.com",
            course_webhook_secret="whsec_c2VjcmV0",
            _env_file=None,
        )
    with pytest.raises(ValidationError, match="COURSE_WEBHOOK_SECRET: a secret starting with whsec_ must be base64"):
        Settings(
            ENGINE_ENV="test",
            course_webhook_enabled=True,
            course_webhook_url=url,
            course_webhook_secret="whsec_???",
            _env_file=None,
        )
    on = Settings(
        ENGINE_ENV="test", course_webhook_enabled=True, course_webhook_url=url, course_webhook_secret="s3cr3t-text"
    )
    assert "s3cr3t" not in repr(on)
    # Off, nothing is asked for: the engine's own table, as before.
    assert not Settings(ENGINE_ENV="test", _env_file=None).course_webhook_enabled
    with pytest.raises(ValidationError, match="COURSE_ENROLLMENTS_URL 'course.example.com/e': an http"):
        Settings(
            ENGINE_ENV="test",
            course_webhook_enabled=True,
            course_webhook_url=url,
            course_webhook_secret="whsec_c2VjcmV0",
            course_enrollments_url="course.example.com/e",
            _env_file=None,
        )


def test_the_course_api_token_is_its_own_and_never_the_admin_token():
    with pytest.raises(ValidationError, match="COURSE_API_TOKEN must differ from ADMIN_API_TOKEN") as caught:
        Settings(ENGINE_ENV="test", admin_api_token="same-token-1234567", course_api_token="same-token-1234567")
    from engine.cli.errors import describe  # what `engine serve` prints: the reason, never the value

    assert describe(caught.value) == (
        "invalid settings: COURSE_API_TOKEN must differ from ADMIN_API_TOKEN: it is the course platform's "
        "read-only token"
    )
    own = Settings(ENGINE_ENV="test", admin_api_token="admin-token-123456", course_api_token="course-token-98765")
    assert own.course_api_token.get_secret_value() == "course-token-98765" and "course-token" not in repr(own)
    # Unset (as shipped): the read API refuses every request; an unset admin token is no match.
    assert Settings(ENGINE_ENV="test", _env_file=None).course_api_token.get_secret_value() == ""


def test_the_hotmart_sync_needs_the_three_api_credentials():
    with pytest.raises(
        ValidationError,
        match="HOTMART_SYNC_ENABLED needs HOTMART_CLIENT_ID, HOTMART_CLIENT_SECRET, HOTMART_BASIC",
    ):
        Settings(ENGINE_ENV="test", hotmart_sync_enabled=True, _env_file=None)
    with pytest.raises(ValidationError, match=r"HOTMART_SYNC_ENABLED needs HOTMART_BASIC \["):
        Settings(
            ENGINE_ENV="test",
            hotmart_sync_enabled=True,
            hotmart_client_id="id",
            hotmart_client_secret="s3cr3t",
            _env_file=None,
        )
    with pytest.raises(ValidationError, match="HOTMART_API_BASE 'developers.hotmart.com': an http"):
        Settings(ENGINE_ENV="test", hotmart_api_base="developers.hotmart.com", _env_file=None)
    on = Settings(
        ENGINE_ENV="test",
        hotmart_sync_enabled=True,
        hotmart_client_id="id",
        hotmart_client_secret="s3cr3t",
        hotmart_basic="Basic YmFzaWMtczNjcjN0",
        _env_file=None,
    )
    assert "s3cr3t" not in repr(on) and "YmFzaWMt" not in repr(on)
    assert on.hotmart_api_base == "https://developers.hotmart.com"
    assert on.hotmart_auth_url == "https://api-sec-vlc.hotmart.com/security/oauth/token"
    # The read-only commands (and `engine doctor`, which names what is missing) start without them.
    from engine.settings import ToolSettings

    assert ToolSettings(ENGINE_ENV="test", hotmart_sync_enabled=True, _env_file=None).missing_hotmart_credentials() == [
        "HOTMART_CLIENT_ID",
        "HOTMART_CLIENT_SECRET",
        "HOTMART_BASIC",
    ]
    assert not Settings(ENGINE_ENV="test", _env_file=None).hotmart_sync_enabled


def test_postgres_urls_get_the_psycopg_driver_and_secrets_stay_hidden():
    settings = Settings(ENGINE_ENV="test", database_url="postgres://u:p@db/x", hotmart_hottok="s3cret", _env_file=None)
    assert settings.sqlalchemy_url == "postgresql+psycopg://u:p@db/x"
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings.model_dump())


def test_webhook_silence_alert_defaults_to_a_day_and_refuses_negative_hours(monkeypatch):
    monkeypatch.delenv("ALERT_NO_WEBHOOKS_HOURS", raising=False)
    assert Settings(ENGINE_ENV="test", _env_file=None).alert_no_webhooks_hours == 24
    monkeypatch.setenv("ALERT_NO_WEBHOOKS_HOURS", "0")
    assert Settings(ENGINE_ENV="test", _env_file=None).alert_no_webhooks_hours == 0
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        Settings(ENGINE_ENV="test", alert_no_webhooks_hours=-1, _env_file=None)


def test_the_settle_window_is_a_few_seconds_from_the_environment(monkeypatch):
    assert Settings(ENGINE_ENV="test", _env_file=None).order_settle_seconds == 2.0
    monkeypatch.setenv("ORDER_SETTLE_SECONDS", "0.5")
    assert Settings(ENGINE_ENV="test", _env_file=None).order_settle_seconds == 0.5
    for unsafe in ("-1", "31"):  # negative is meaningless; longer holds every student's webhooks
        monkeypatch.setenv("ORDER_SETTLE_SECONDS", unsafe)
        with pytest.raises(ValidationError, match="order_settle_seconds"):
            Settings(ENGINE_ENV="test", _env_file=None)


def test_the_reconcile_schedule_is_a_cron_line_or_off():
    assert Settings(ENGINE_ENV="test", _env_file=None).reconcile_schedule == "30 3 * * *"
    assert Settings(ENGINE_ENV="test", reconcile_schedule=" 0  2 * * 1 ", _env_file=None).reconcile_schedule == (
        "0 2 * * 1"
    )
    assert Settings(ENGINE_ENV="test", reconcile_schedule="OFF", _env_file=None).reconcile_schedule == "off"
    with pytest.raises(ValidationError, match="five cron fields"):
        Settings(ENGINE_ENV="test", reconcile_schedule="nightly", _env_file=None)
    with pytest.raises(ValidationError, match="RECONCILE_SCHEDULE '99 3 \\* \\* \\*'"):
        Settings(ENGINE_ENV="test", reconcile_schedule="99 3 * * *", _env_file=None)
    with pytest.raises(ValidationError, match="reconcile_apply"):
        Settings(ENGINE_ENV="test", reconcile_apply="everything", _env_file=None)
