"""LOG_FORMAT: one JSON object per line, with the event's context; no secret, no e-mail."""

from __future__ import annotations

import hashlib
import io
import json
import logging

import pytest

from connectors.base import StepResult
from engine.logs import JsonFormatter, _ContextFilter, log_context, student_ref
from engine.settings import Settings
from tests.conftest import ADMIN_TOKEN, HOTTOK, load_payload
from tests.pipeline.test_processing import link

ANA = "ana.exemplo@example.com"


@pytest.fixture
def json_lines():
    """Everything logged during the test, as the production handler writes it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(_ContextFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    previous = root.level
    root.setLevel(logging.INFO)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


def test_default_format_is_json_in_production_and_text_in_development():
    assert Settings(ENGINE_ENV="production", hotmart_hottok="x", admin_api_token="y", _env_file=None).logs_as == "json"
    assert Settings(ENGINE_ENV="development", _env_file=None).logs_as == "text"
    assert Settings(ENGINE_ENV="development", LOG_FORMAT="json", _env_file=None).logs_as == "json"
    with pytest.raises(ValueError, match="log_format"):
        Settings(ENGINE_ENV="development", LOG_FORMAT="xml", _env_file=None)


def test_a_json_line_has_time_level_logger_message_and_the_context(json_lines):
    log = logging.getLogger("engine.test")
    with log_context(event_id=42, correlation_id="c0ffee", student="Ana.Exemplo@example.com", product="curso"):
        with log_context(step="2:add_role"):
            log.warning("step %s slow", 2)
        log.info("after the step")
    log.info("outside")
    first, second, third = json_lines()
    assert set(first) == {
        "time",
        "level",
        "logger",
        "message",
        "event_id",
        "correlation_id",
        "student",
        "product",
        "step",
    }
    assert (first["level"], first["logger"], first["message"]) == ("WARNING", "engine.test", "step 2 slow")
    assert first["event_id"] == 42 and first["step"] == "2:add_role" and first["product"] == "curso"
    assert first["student"] == hashlib.sha256(ANA.encode()).hexdigest()[:12] == student_ref(ANA)
    assert "step" not in second and second["event_id"] == 42
    assert set(third) == {"time", "level", "logger", "message"}
    assert first["time"].endswith("+00:00")


class Exploding:
    name = "discord"
    actions = frozenset({"add_role", "remove_role", "send_dm"})

    def run(self, step, ctx) -> StepResult:
        raise RuntimeError("connector bug")


def test_event_processing_logs_name_the_event_step_and_hashed_student(make_harness, json_lines):
    h = make_harness()
    for action in Exploding.actions:
        h.runtime.connectors[action] = Exploding()
    h.deliver(load_payload("purchase_approved.json"))
    h.deliver(load_payload("purchase_chargeback.json"))  # comunidade from 'new': ignored, a normal outcome
    link(h)  # add_role raises inside the connector: logged with the step's context
    lines = json_lines()
    [crash] = [line for line in lines if line["message"].startswith("connector discord raised")]
    assert crash["level"] == "ERROR" and "RuntimeError: connector bug" in crash["exception"]
    assert crash["step"].endswith(":add_role") and crash["product"] == "curso"
    assert crash["student"] == student_ref(ANA) and isinstance(crash["event_id"], int) and crash["correlation_id"]
    text = json.dumps(lines)
    assert ANA not in text  # the e-mail never, its hash only
    for secret in (HOTTOK, ADMIN_TOKEN):
        assert secret not in text
    # transitions' "Can't trigger event" for the ignored chargeback is silenced.
    assert not [line for line in lines if "Can't trigger event" in line["message"]]


def test_migrations_log_what_they_run_without_alembics_plugin_lines(tmp_path):
    import subprocess
    import sys

    code = (
        "from engine.logs import configure_logging; from engine.db.migrate import upgrade\n"
        "from engine.settings import Settings\n"
        "configure_logging('text')\n"
        f"upgrade(Settings(ENGINE_ENV='test', var_dir={str(tmp_path)!r}, _env_file=None))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "INFO alembic.runtime.migration: Running upgrade  -> 0001" in done.stderr
    assert "alembic.runtime.plugins" not in done.stderr
