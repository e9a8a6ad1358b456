"""The deployment files: docker-compose.yml, .env.example, Dockerfile, .dockerignore.

docker-compose.yml is validated against the Compose Specification JSON schema vendored as
``tests/data/compose-spec.json``. It is an unmodified copy of ``compose/config/compose_spec.json``
from the PyPI package ``docker-compose`` 1.29.2 (wheel ``docker_compose-1.29.2-py2.py3-none-any.whl``,
Apache-2.0), which vendors compose-spec's ``schema/compose-spec.json`` as of May 2021 (draft
2019-09). Keys added to the specification later (top-level ``name``, healthcheck ``start_interval``,
the object form of ``env_file``, ``develop`` ...) are therefore rejected here: keep the compose file
to that subset, which every Compose v2 release accepts.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft201909Validator
from pydantic import SecretStr

from engine.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
SCHEMA_FILE = Path(__file__).resolve().parent / "data" / "compose-spec.json"

LONG_RUNNING = ("postgres", "redis", "api", "worker", "bot")
APP_SERVICES = ("api", "worker", "bot")
ENGINE_SERVICES = ("migrate", *APP_SERVICES)
SECRET_NAME = re.compile(r"PASSWORD|TOKEN|HOTTOK|SECRET|PRIVATE_KEY|API_KEY", re.IGNORECASE)
# ${VAR}, ${VAR:-default}, ${VAR:?error}, and bare $VAR; "$$" is a literal dollar sign.
REFERENCE = re.compile(r"(?<!\$)\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?P<modifier>[^}]*)\}|(?P<bare>[A-Za-z_]\w*))")
ONLY_REFERENCE = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(:?\?[^}]*)?\}$")


# --- helpers -------------------------------------------------------------------------------


def load_compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


def schema_errors(document: dict) -> list[str]:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    # The schema's "$schema" is the non-canonical "http://json-schema.org/draft/2019-09/schema#",
    # which jsonschema does not recognise: name the draft explicitly.
    Draft201909Validator.check_schema(schema)
    return sorted(
        f"{'/'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
        for error in Draft201909Validator(schema).iter_errors(document)
    )


def strings(node) -> list[str]:
    """Every string value (and mapping key) in a parsed YAML tree: where Compose interpolates."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in (*strings(key), *strings(value))]
    if isinstance(node, list):
        return [s for item in node for s in strings(item)]
    return []


def references(text: str) -> list[tuple[str, str]]:
    """(name, modifier) for each variable reference in ``text``."""
    return [(m["braced"] or m["bare"], m["modifier"] or "") for m in REFERENCE.finditer(text)]


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def parse_env_example() -> list[tuple[str, str, list[str]]]:
    """(name, value, comment lines directly above) for each assignment in .env.example."""
    entries: list[tuple[str, str, list[str]]] = []
    comments: list[str] = []
    for raw in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line:
            comments = []
        elif line.startswith("#"):
            comments.append(line)
        else:
            match = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", line)
            assert match, f".env.example: not a NAME=value line: {raw!r}"
            entries.append((match[1], match[2], comments))
            comments = []
    return entries


def env_example() -> dict[str, str]:
    return {name: value for name, value, _ in parse_env_example()}


def settings_variables() -> dict[str, bool]:
    """Environment variable -> is it a secret, for every field of engine.settings.Settings."""
    return {
        (field.alias or name).upper(): field.annotation is SecretStr for name, field in Settings.model_fields.items()
    }


# --- the compose file is valid -------------------------------------------------------------


def test_compose_file_validates_against_the_compose_spec():
    assert schema_errors(load_compose()) == []


@pytest.mark.parametrize(
    "break_it",
    [
        pytest.param(lambda d: d.update(servics={}), id="unknown top-level key"),
        pytest.param(lambda d: d["services"]["api"].update(restart_policy="always"), id="unknown service key"),
        pytest.param(
            lambda d: d["services"]["worker"]["depends_on"]["migrate"].update(condition="service_done"),
            id="unknown depends_on condition",
        ),
        pytest.param(lambda d: d["services"]["redis"]["healthcheck"].update(command="ping"), id="bad healthcheck"),
        pytest.param(lambda d: d["services"]["migrate"].update(restart=False), id="unquoted restart no"),
    ],
)
def test_vendored_schema_rejects_invalid_compose_files(break_it):
    document = copy.deepcopy(load_compose())
    break_it(document)
    assert schema_errors(document), "the vendored schema accepted a broken compose file"


# --- services, restart policies, healthchecks, ordering ------------------------------------


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_long_running_services_exist_and_restart_unless_stopped(name):
    services = load_compose()["services"]
    assert name in services
    assert services[name].get("restart") == "unless-stopped"


def test_migrate_is_a_one_shot_that_waits_for_a_healthy_postgres():
    migrate = load_compose()["services"]["migrate"]
    assert migrate["restart"] == "no"
    assert migrate["command"] == ["engine", "migrate"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_healthchecks(name):
    healthcheck = load_compose()["services"][name].get("healthcheck")
    assert healthcheck, f"{name} has no healthcheck"
    assert not healthcheck.get("disable")
    assert healthcheck["test"][0] in {"CMD", "CMD-SHELL"} and len(healthcheck["test"]) > 1


def test_healthcheck_commands():
    services = load_compose()["services"]
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["redis"]["healthcheck"]["test"][1:] == ["redis-cli", "ping"]
    api_check = services["api"]["healthcheck"]["test"]
    # curl may be absent from python:3.11-slim: the check must use the image's Python.
    assert api_check[1] == "python" and "curl" not in " ".join(api_check)
    assert "urllib" in api_check[-1] and ":8000/healthz" in api_check[-1]
    # The worker and the bot have no port: their checks read the heartbeat each writes.
    assert services["worker"]["healthcheck"]["test"] == ["CMD", "engine", "heartbeat", "worker"]
    assert services["bot"]["healthcheck"]["test"] == ["CMD", "engine", "heartbeat", "bot"]


def test_the_image_is_built_once_and_reused():
    services = load_compose()["services"]
    builders = [name for name, service in services.items() if "build" in service]
    assert builders == ["migrate"]
    images = {services[name]["image"] for name in ENGINE_SERVICES}
    assert images == {"lifecycle-engine:latest"}
    # The others never try a registry for it: they run what migrate built.
    assert {services[name].get("pull_policy") for name in APP_SERVICES} == {"never"}


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_services_start_after_migrations_succeed(name):
    depends_on = load_compose()["services"][name]["depends_on"]
    assert depends_on["migrate"]["condition"] == "service_completed_successfully"


@pytest.mark.parametrize("name", ["api", "worker"])
def test_api_and_worker_wait_for_a_healthy_redis(name):
    depends_on = load_compose()["services"][name]["depends_on"]
    assert depends_on["redis"]["condition"] == "service_healthy"


def test_commands_and_ports():
    services = load_compose()["services"]
    assert services["api"]["command"] == ["engine", "serve", "--host", "0.0.0.0", "--port", "8000"]
    # Published on the host's loopback only, behind the TLS proxy; never on every interface.
    assert services["api"]["ports"] == ["127.0.0.1:8000:8000"]
    assert services["worker"]["command"] == ["engine", "worker"]
    assert services["bot"]["command"] == ["engine", "bot"]
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")
    # The datastores are reachable only from the compose network.
    assert "ports" not in services["postgres"] and "ports" not in services["redis"]


def test_postgres_data_lives_in_a_named_volume():
    document = load_compose()
    mounts = document["services"]["postgres"]["volumes"]
    named = [m.split(":", 1)[0] for m in mounts if m.endswith(":/var/lib/postgresql/data")]
    assert named and named[0] in (document.get("volumes") or {})


@pytest.mark.parametrize("name", ENGINE_SERVICES)
def test_engine_services_read_env_file_and_point_at_compose_services(name):
    service = load_compose()["services"][name]
    env_files = service["env_file"] if isinstance(service["env_file"], list) else [service["env_file"]]
    assert ".env" in env_files
    env = environment(service)
    # No password in the URL (symbols would break it): libpq reads PGPASSWORD.
    assert env["DATABASE_URL"] == "postgresql://engine@postgres:5432/engine"
    assert re.fullmatch(r"\$\{POSTGRES_PASSWORD(:\?[^}]*)?\}", env["PGPASSWORD"])
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    assert env["RULES_DIR"] == "/app/rules"
    assert "./rules:/app/rules:ro" in service["volumes"]


def test_postgres_service_credentials_match_database_url():
    services = load_compose()["services"]
    env = environment(services["postgres"])
    assert env["POSTGRES_USER"] == "engine" and env["POSTGRES_DB"] == "engine"
    assert env["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD")


# --- variables: compose, settings and .env.example agree -----------------------------------


def test_every_compose_variable_is_in_env_example():
    referenced = {name for text in strings(load_compose()) for name, _ in references(text)}
    assert referenced, "expected ${VAR} references (at least POSTGRES_PASSWORD)"
    assert sorted(referenced - env_example().keys()) == []


def test_every_setting_is_in_env_example():
    variables = settings_variables()
    # The parser must see the fields, aliases included, or this test proves nothing.
    assert {"ENGINE_ENV", "DATABASE_URL", "HOTMART_HOTTOK", "TIMER_POLL_SECONDS"} <= variables.keys()
    assert sorted(variables.keys() - env_example().keys()) == []


def test_env_example_has_no_unknown_variables():
    known = settings_variables().keys() | {"POSTGRES_PASSWORD"}
    assert sorted(env_example().keys() - known) == []


def test_env_example_comments_every_variable_once():
    entries = parse_env_example()
    names = [name for name, _, _ in entries]
    assert len(names) == len(set(names)), "a variable is assigned twice"
    assert [name for name, _, comments in entries if not comments] == []


def test_env_example_leaves_secrets_empty():
    values = env_example()
    secrets = [name for name, secret in settings_variables().items() if secret] + ["POSTGRES_PASSWORD"]
    assert {"HOTMART_HOTTOK", "ADMIN_API_TOKEN", "DISCORD_BOT_TOKEN", "MANYCHAT_API_TOKEN"} <= set(secrets)
    assert {name: values[name] for name in secrets if values[name]} == {}


def test_env_example_ships_connectors_off_with_the_rollout_order():
    values = env_example()
    assert {name: values[name] for name in ("HOTMART_ENABLED", "DISCORD_ENABLED", "MANYCHAT_ENABLED")} == {
        "HOTMART_ENABLED": "false",
        "DISCORD_ENABLED": "false",
        "MANYCHAT_ENABLED": "false",
    }
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    assert text.index("HOTMART_ENABLED=") < text.index("DISCORD_ENABLED=") < text.index("MANYCHAT_ENABLED=")
    assert re.search(r"HOTMART_ENABLED\W+then\W+DISCORD_ENABLED\W+then\W+MANYCHAT_ENABLED", text)


def test_env_example_values_are_accepted_by_settings():
    """The example, once its secrets are filled in, is a valid configuration."""
    values = {name: value for name, value in env_example().items() if name in settings_variables()}
    values.update(HOTMART_HOTTOK="x", ADMIN_API_TOKEN="y")
    settings = Settings(_env_file=None, **values)
    assert not settings.hotmart_enabled and not settings.discord_enabled and not settings.manychat_enabled
    assert settings.environment == "production"


# --- no secrets in the compose file --------------------------------------------------------


def secret_problems(document: dict) -> list[str]:
    secret_settings = {name for name, secret in settings_variables().items() if secret}
    problems = []
    for service_name, service in document["services"].items():
        for key, value in environment(service).items():
            if key in secret_settings:
                problems.append(f"{service_name}: {key} belongs in .env, not in docker-compose.yml")
            elif SECRET_NAME.search(key) and not ONLY_REFERENCE.fullmatch(value):
                problems.append(f"{service_name}: {key} is not a plain ${{VAR}} reference")
            for password in re.findall(r"://[^:/@]+:([^@]*)@", value):
                if not ONLY_REFERENCE.fullmatch(password):
                    problems.append(f"{service_name}: {key} embeds a literal password")
    # A reference must not carry a default either: ${POSTGRES_PASSWORD:-hunter2} is a literal secret.
    for text in strings(document):
        for name, modifier in references(text):
            if SECRET_NAME.search(name) and modifier.lstrip(":").startswith("-"):
                problems.append(f"{name} has a default value in docker-compose.yml")
    return problems


def test_compose_sets_no_literal_secret():
    assert secret_problems(load_compose()) == []


@pytest.mark.parametrize(
    ("service", "key", "value", "expected"),
    [
        ("postgres", "POSTGRES_PASSWORD", "hunter2", "postgres: POSTGRES_PASSWORD is not a plain"),
        ("postgres", "POSTGRES_PASSWORD", "${POSTGRES_PASSWORD:-hunter2}", "POSTGRES_PASSWORD has a default"),
        ("api", "DATABASE_URL", "postgresql://engine:hunter2@postgres/engine", "api: DATABASE_URL embeds"),
        ("worker", "ADMIN_API_TOKEN", "${ADMIN_API_TOKEN}", "worker: ADMIN_API_TOKEN belongs in .env"),
        ("bot", "DISCORD_BOT_TOKEN", "abc.def", "bot: DISCORD_BOT_TOKEN belongs in .env"),
    ],
)
def test_secret_check_catches_literal_secrets(service, key, value, expected):
    """The check above must be able to fail."""
    document = load_compose()
    document["services"][service]["environment"] = {**environment(document["services"][service]), key: value}
    assert any(problem.startswith(expected) for problem in secret_problems(document))


# --- the image -------------------------------------------------------------------------------


def test_dockerfile_builds_a_non_root_image_of_the_repo():
    text = DOCKERFILE.read_text(encoding="utf-8")
    instructions = [line.split(None, 1) for line in text.splitlines() if line and not line[0].isspace()]
    instructions = [(parts[0].upper(), parts[1] if len(parts) > 1 else "") for parts in instructions if parts]
    assert ("FROM", "python:3.11-slim") in instructions
    users = [arg for keyword, arg in instructions if keyword == "USER"]
    assert users and users[-1] not in {"root", "0"}
    assert ("CMD", '["engine", "serve", "--host", "0.0.0.0", "--port", "8000"]') in instructions
    sources = [arg.split()[0] for keyword, arg in instructions if keyword == "COPY"]
    assert {"pyproject.toml", "config.schema.json", "engine", "connectors", "bot", "rules"} <= set(sources)
    assert [source for source in sources if not (ROOT / source).exists()] == []
    assert "pip install" in text and "--no-deps ." in text


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_image():
    patterns = {
        line.strip() for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines() if not line.startswith("#")
    }
    assert {".env", ".git", ".venv", "var"} <= patterns
    # Nothing the Dockerfile copies may be ignored.
    assert not patterns & {"pyproject.toml", "config.schema.json", "engine", "connectors", "bot", "rules"}
