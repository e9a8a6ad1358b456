# One image for every app process: api (default CMD), worker, bot and the one-shot migrate.
# docker-compose.yml picks the command per service; secrets come only from the environment.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

RUN useradd --system --uid 10001 --user-group --home-dir /app --shell /usr/sbin/nologin app

WORKDIR /src

# Third-party dependencies first, exactly as locked (versions and hashes; no test tools), so this
# layer is reused until the lock changes. `make lock` upgrades the lock.
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock

# The project itself (engine, connectors, bot), installed like any package; the source is not kept.
COPY pyproject.toml ./
COPY config.schema.json ./
COPY engine ./engine
COPY connectors ./connectors
COPY bot ./bot
# engine/config.schema.json links to ./config.schema.json: the wheel carries the file itself.
RUN pip install --no-deps . \
    && rm -rf /src

WORKDIR /app

# Baked-in rules: a fallback only. Compose mounts ./rules over /app/rules read-only, so a rules
# change deploys with `git pull` + restart, without a rebuild.
COPY rules ./rules
RUN mkdir var && chown app:app var

ENV RULES_DIR=/app/rules \
    VAR_DIR=/app/var

# Smoke test of the installed package: the rules load and validate against the schema.
RUN engine check

USER app
EXPOSE 8000
CMD ["engine", "serve", "--host", "0.0.0.0", "--port", "8000"]
