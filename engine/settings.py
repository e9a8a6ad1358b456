"""The one settings class: every knob comes from the environment (DESIGN section 6)."""

from __future__ import annotations

import hmac
from functools import lru_cache
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DISCORD_API_BASE = "https://discord.com/api/v10"
MANYCHAT_API_BASE = "https://api.manychat.com"
HOTMART_AUTH_URL = "https://api-sec-vlc.hotmart.com/security/oauth/token"
HOTMART_API_BASE = "https://developers.hotmart.com"  # the sandbox: https://sandbox.hotmart.com


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # "development" allows empty secrets (the embedded default); anything else refuses them.
    environment: str = Field(default="production", alias="ENGINE_ENV")

    database_url: str | None = None  # unset: SQLite under var_dir
    redis_url: str | None = None  # unset: Huey's SQLite storage under var_dir
    # Huey's name: every key it keeps in Redis carries it (two installs can share one Redis).
    queue_name: str = Field(default="lifecycle-engine", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    var_dir: Path = Path("var")
    rules_dir: Path = Path("rules")

    hotmart_hottok: SecretStr = SecretStr("")
    # Each other platform's secret (engine.sources): Kiwify's webhook token (the key of its
    # HMAC-SHA1 `signature`), Eduzz's Developer Hub secret key (the key of its x-signature).
    kiwify_token: SecretStr = SecretStr("")
    eduzz_secret: SecretStr = SecretStr("")
    admin_api_token: SecretStr = SecretStr("")
    # The admin page's operators: "name:scrypt$..." entries (comma or newline separated), made by
    # `engine admin-user NAME`; or a file of such lines. ADMIN_API_TOKEN also signs in, as "admin".
    admin_users: SecretStr = SecretStr("")
    admin_users_file: Path | None = None
    admin_session_hours: float = Field(default=12.0, gt=0, le=24 * 30)
    # Failed sign-ins (page or API token) from one address within the window lock it out for the window.
    login_max_failures: int = Field(default=5, ge=1)
    login_lockout_minutes: float = Field(default=15.0, gt=0)
    # A membership waiting for the Discord link longer than this is "stuck" on the admin page.
    stuck_days: int = Field(default=3, ge=1)
    # What an operator reads (the admin page; `engine check` too): en or pt-BR; a browser's
    # Accept-Language wins on the page.
    engine_lang: Literal["en", "pt-BR"] = "en"

    @field_validator("admin_users_file", mode="before")
    @classmethod
    def _no_file(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("engine_lang", mode="before")
    @classmethod
    def _lang_alias(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower().replace("_", "-") in {"pt", "pt-br"}:
            return "pt-BR"
        if isinstance(value, str) and value.strip().lower() in {"", "en", "en-us", "en-gb"}:
            return "en"
        return value

    max_body_bytes: int = 256 * 1024
    webhook_threads: int = Field(default=3, ge=1)  # per API process (see engine/api/webhooks.py)

    # /docs and /openapi.json: public | admin (behind ADMIN_API_TOKEN) | off. Unset: public in
    # development, admin otherwise.
    api_docs: Literal["public", "admin", "off"] | None = None

    # A source turned off still verifies and stores its webhooks, held until it is turned on.
    hotmart_enabled: bool = True
    kiwify_enabled: bool = False
    eduzz_enabled: bool = False
    discord_enabled: bool = False
    manychat_enabled: bool = False

    discord_bot_token: SecretStr = SecretStr("")
    discord_guild_id: str = ""
    discord_alert_channel_id: str = ""
    discord_api_base: str = DISCORD_API_BASE

    manychat_api_token: SecretStr = SecretStr("")
    manychat_api_base: str = MANYCHAT_API_BASE

    # The course platform: each enroll/unenroll step also POSTs a signed webhook (Standard Webhooks)
    # to this URL. Off: the engine's class_enrollments table alone, as before.
    course_webhook_enabled: bool = False
    course_webhook_url: str = ""
    # whsec_<base64> (the spec's form: the key is the decoded bytes), or any text (its UTF-8 bytes).
    course_webhook_secret: SecretStr = SecretStr("")
    # Optional: where the platform serves each class's enrollments (GET ?class=&cursor=, signed with the
    # secret above); set, `engine reconcile` compares the rules with the platform's own list.
    course_enrollments_url: str = ""
    # The course platform's read API (/api/v1/classes): its own read-only bearer token, never the
    # admin token. Unset: the routes answer 401.
    course_api_token: SecretStr = SecretStr("")

    # Hotmart's API (connectors/hotmart_api.py), read by `engine sync hotmart` and the import: the
    # credentials Hotmart shows under Tools > Developer Credentials (client id, secret, "Basic" token).
    hotmart_sync_enabled: bool = False
    hotmart_client_id: str = ""
    hotmart_client_secret: SecretStr = SecretStr("")
    hotmart_basic: SecretStr = SecretStr("")
    hotmart_auth_url: str = HOTMART_AUTH_URL
    hotmart_api_base: str = HOTMART_API_BASE
    # `engine sync hotmart` in the worker (when HOTMART_SYNC_ENABLED): a cron line (UTC) or "off",
    # and what a scheduled run applies: none (report only), grants (approvals), all (guarded).
    hotmart_sync_schedule: str = "0 */6 * * *"
    hotmart_sync_apply: Literal["none", "grants", "all"] = "none"

    # "json": one object per line (production's default); "text": a developer's terminal (development's).
    log_format: Literal["text", "json"] | None = None

    retry_delay_seconds: float = 30.0  # the one automatic retry of a failed step
    # How often each worker sweeps: due timers, lost or stuck events, held webhooks, unposted alerts.
    timer_poll_seconds: float = Field(default=30.0, gt=0, le=3600)
    # A fresh webhook waits this long (after the student's newest arrival) so that events
    # crossing in flight are applied in creation order (docs/architecture/index.md: "Per student, in order").
    order_settle_seconds: float = Field(default=2.0, ge=0, le=30)
    # Discord allows 50 requests/s per bot; a little under it, so network jitter between
    # processes never lands a 51st request in one of Discord's seconds.
    discord_global_rate: float = Field(default=48.0, gt=0, le=50)
    # Threads of `engine worker` that run ManyChat steps in their own lane (0: no lane, the
    # main threads run them and may sleep in ManyChat's budget).
    manychat_lane_threads: int = Field(default=8, ge=0, le=64)
    # Database connections per process: None sizes the pool from the threads (one per
    # thread plus a few for the sweep and the API); checked against max_connections at start.
    database_pool_size: int | None = Field(default=None, ge=1, le=500)

    @field_validator("database_pool_size", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value  # DATABASE_POOL_SIZE= (as in .env.example)

    # An event no worker finished this long after it was (re-)queued is queued again by the sweep;
    # one still open this long after it arrived, or a student's lock held this long by an idle
    # database connection, is stuck: one grouped alert (pipeline.stuck), /healthz degraded.
    stuck_after_seconds: float = Field(default=120.0, ge=1)
    # A student's lock held by an idle connection this long is freed: the sweep ends that connection.
    stuck_lock_seconds: float = Field(default=300.0, ge=1)
    # A stop signal lets running tasks finish for this long; then the worker exits whatever they
    # are doing (unfinished work stays in the database for the next worker).
    worker_stop_seconds: float = Field(default=30.0, gt=0)
    # An event the worker raises on this many times is needs_attention, no longer re-queued.
    worker_max_failures: int = Field(default=3, ge=1)
    # How often a running process looks for changed rules, even when no event arrives.
    rules_reload_seconds: float = Field(default=30.0, gt=0)
    # Hotmart disables a webhook URL that keeps failing, and silence is the only symptom:
    # alert once when no webhook arrived for this long (0 turns it off).
    alert_no_webhooks_hours: float = Field(default=24.0, ge=0)

    # Liveness: the worker writes a heartbeat this often; /healthz and `engine healthcheck --worker`
    # call it stale after worker_stale_seconds.
    heartbeat_seconds: float = Field(default=15.0, gt=0)
    worker_stale_seconds: float = Field(default=90.0, gt=0)
    # A starting worker waits this long for `engine migrate` (or `engine serve`) to bring the
    # database to the code's schema, then exits non-zero.
    migration_wait_seconds: float = Field(default=300.0, ge=0)

    @property
    def api_docs_mode(self) -> str:
        return self.api_docs or ("public" if self.development else "admin")

    # engine reconcile in the worker: a cron line (minute hour day month weekday, UTC) or "off".
    reconcile_schedule: str = "30 3 * * *"
    # What a scheduled run applies: none (report only), grants (missing grants only), all (guarded).
    reconcile_apply: Literal["none", "grants", "all"] = "none"
    # Revocations a run applies without --confirm (unset: 10 or 5 % of the students, the larger).
    reconcile_max_revokes: int | None = Field(default=None, ge=0)

    @field_validator("reconcile_max_revokes", mode="before")
    @classmethod
    def _empty_is_default(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("reconcile_schedule", "hotmart_sync_schedule")
    @classmethod
    def _cron_line(cls, value: str, info: ValidationInfo) -> str:
        name = (info.field_name or "").upper()
        value = " ".join(value.split())
        if value.lower() == "off":
            return "off"
        fields = value.split(" ")
        if len(fields) != 5:
            raise ValueError(f"{name} {value!r}: five cron fields (e.g. '30 3 * * *') or 'off'")
        from huey import crontab

        try:
            crontab(*fields)
        except ValueError as exc:
            raise ValueError(f"{name} {value!r}: {exc}") from exc
        return value

    # The read-only commands (ToolSettings) serve nothing, so they need neither secret.
    secrets_required: ClassVar[bool] = True

    @property
    def development(self) -> bool:
        return self.environment.lower() in {"development", "dev", "test"}

    @property
    def logs_as(self) -> str:
        return self.log_format or ("text" if self.development else "json")

    @model_validator(mode="after")
    def _refuse_unsafe(self) -> Settings:
        if not self.development and self.secrets_required:
            missing = [
                name
                for name, value in (
                    ("HOTMART_HOTTOK", self.hotmart_hottok),
                    ("ADMIN_API_TOKEN", self.admin_api_token),
                )
                if not value.get_secret_value()
            ]
            if missing:
                raise ValueError(f"{', '.join(missing)} must be set (or ENGINE_ENV=development for local use)")
        for flag, secret, name in (
            (self.kiwify_enabled, self.kiwify_token, "KIWIFY"),
            (self.eduzz_enabled, self.eduzz_secret, "EDUZZ"),
        ):
            if flag and not self.development and self.secrets_required and not secret.get_secret_value():
                setting = "KIWIFY_TOKEN" if name == "KIWIFY" else "EDUZZ_SECRET"
                raise ValueError(f"{name}_ENABLED needs {setting} (or ENGINE_ENV=development for local use)")
        if self.discord_enabled and not (self.discord_bot_token.get_secret_value() and self.discord_guild_id):
            raise ValueError("DISCORD_ENABLED needs DISCORD_BOT_TOKEN and DISCORD_GUILD_ID")
        if self.manychat_enabled and not self.manychat_api_token.get_secret_value():
            raise ValueError("MANYCHAT_ENABLED needs MANYCHAT_API_TOKEN")
        course_token = self.course_api_token.get_secret_value()
        if course_token and hmac.compare_digest(
            course_token.encode(), self.admin_api_token.get_secret_value().encode()
        ):
            raise ValueError(
                "COURSE_API_TOKEN must differ from ADMIN_API_TOKEN: it is the course platform's read-only token"
            )
        if self.course_webhook_enabled and self.secrets_required:  # `engine doctor` names what is wrong
            self._check_course_webhook()
        # `engine doctor` names what is wrong
        if self.hotmart_sync_enabled and self.secrets_required and (missing := self.missing_hotmart_credentials()):
            raise ValueError(f"HOTMART_SYNC_ENABLED needs {', '.join(missing)}")
        for name, url in (("HOTMART_AUTH_URL", self.hotmart_auth_url), ("HOTMART_API_BASE", self.hotmart_api_base)):
            if not url.startswith(("https://", "http://")):
                raise ValueError(f"{name} {url!r}: an http(s):// address")
        users = self.admin_users.get_secret_value()
        if self.admin_users_file is not None:
            try:
                users += "\n" + self.admin_users_file.read_text(encoding="utf-8")
            except OSError as exc:
                raise ValueError(f"ADMIN_USERS_FILE {self.admin_users_file}: {exc.strerror or exc}") from None
        if bad := unhashed_operators(users):
            raise ValueError(
                f"ADMIN_USERS: {', '.join(bad)}: each entry is name:scrypt$... as `engine admin-user NAME` prints "
                "(a plain password is refused)"
            )
        if self.worker_stale_seconds <= self.heartbeat_seconds:
            raise ValueError("WORKER_STALE_SECONDS must be longer than HEARTBEAT_SECONDS")
        return self

    def missing_hotmart_credentials(self) -> list[str]:
        """The Hotmart API credentials not set (the client id, secret and Basic token)."""
        return [
            name
            for name, value in (
                ("HOTMART_CLIENT_ID", self.hotmart_client_id),
                ("HOTMART_CLIENT_SECRET", self.hotmart_client_secret.get_secret_value()),
                ("HOTMART_BASIC", self.hotmart_basic.get_secret_value()),
            )
            if not value.strip()
        ]

    def _check_course_webhook(self) -> None:
        from connectors.course_platform import signing_key

        missing = [
            name
            for name, value in (
                ("COURSE_WEBHOOK_URL", self.course_webhook_url),
                ("COURSE_WEBHOOK_SECRET", self.course_webhook_secret.get_secret_value()),
            )
            if not value.strip()
        ]
        if missing:
            raise ValueError(f"COURSE_WEBHOOK_ENABLED needs {' and '.join(missing)}")
        if not self.course_webhook_url.startswith(("https://", "http://")):
            raise ValueError(f"COURSE_WEBHOOK_URL {self.course_webhook_url!r}: an http(s):// address")
        enrollments = self.course_enrollments_url.strip()
        if enrollments and not enrollments.startswith(("https://", "http://")):
            raise ValueError(f"COURSE_ENROLLMENTS_URL {enrollments!r}: an http(s):// address")
        try:
            signing_key(self.course_webhook_secret.get_secret_value())
        except ValueError as exc:
            raise ValueError(f"COURSE_WEBHOOK_SECRET: {exc}") from None

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            url = self.database_url
            # Plain postgres URLs get the psycopg 3 driver.
            for prefix in ("postgresql://", "postgres://"):
                if url.startswith(prefix):
                    return "postgresql+psycopg://" + url[len(prefix) :]
            return url
        return f"sqlite:///{(self.var_dir / 'engine.db').as_posix()}"


def operator_entries(text: str) -> list[tuple[str, str]]:
    """ADMIN_USERS (or the users file): ``name:secret-hash`` entries, comma or newline separated;
    blank lines and ``#`` comments skipped."""
    entries = []
    for raw in text.replace(",", "\n").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            name, _, secret = line.partition(":")
            entries.append((name.strip(), secret.strip()))
    return entries


def unhashed_operators(text: str) -> list[str]:
    """The names of entries whose secret is not a hash (or that have no name): refused."""
    return [
        name or "(no name)" for name, secret in operator_entries(text) if not name or not secret.startswith("scrypt$")
    ]


class ToolSettings(Settings):
    """Settings of the commands that read rules or the database and serve nothing (events, student,
    check...): no webhook secret or admin token needed. Every other check still applies."""

    secrets_required: ClassVar[bool] = False


@lru_cache
def get_settings() -> Settings:
    return Settings()
