# Two commands matter: `make run` (the service, embedded default) and `make test` (everything).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: install run test lint check services bench

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

# The API plus an in-process worker on SQLite under ./var (no PostgreSQL or Redis needed).
# Development secrets unless you export your own.
run: install
	ENGINE_ENV=$${ENGINE_ENV:-development} \
	HOTMART_HOTTOK=$${HOTMART_HOTTOK:-dev-hottok} \
	ADMIN_API_TOKEN=$${ADMIN_API_TOKEN:-dev-admin-token} \
	$(BIN)/engine serve --host $${HOST:-127.0.0.1} --port $${PORT:-8000}

services:
	bash .ci/services

test: install services
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/engine check
	$(BIN)/engine test
	$(BIN)/pytest -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

check: install
	$(BIN)/engine check
	$(BIN)/engine test
