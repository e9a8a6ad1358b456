# Two commands matter: `make run` (the service, embedded default) and `make test` (everything).
# Dependencies come from the hashed lock files (requirements.lock: to run; requirements-test.lock:
# to run and test); `make lock` upgrades them (see docs/architecture/dependencies.md).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
# The locks are resolved against PyPI alone, whatever index this machine's pip is set up with.
LOCK := PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= $(BIN)/pip-compile --quiet --generate-hashes --strip-extras \
	--allow-unsafe --no-emit-index-url --no-emit-find-links --index-url https://pypi.org/simple

.PHONY: install install-run run test lint check services bench lock docs

# Everything a developer and CI need: the service and the test tools.
install: $(VENV)/.installed

$(VENV)/.installed: requirements-test.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --require-hashes -r requirements-test.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $@

# The service only (no test tools): what `make run` needs.
install-run: $(VENV)/.installed-run

$(VENV)/.installed-run: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --require-hashes -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $@

# The API plus an in-process worker on SQLite under ./var (no PostgreSQL or Redis needed).
# Development secrets unless you export your own.
run: install-run
	ENGINE_ENV=$${ENGINE_ENV:-development} \
	HOTMART_HOTTOK=$${HOTMART_HOTTOK:-dev-hottok} \
	ADMIN_API_TOKEN=$${ADMIN_API_TOKEN:-dev-admin-token} \
	$(BIN)/engine serve --host $${HOST:-127.0.0.1} --port $${PORT:-8000}

services:
	bash .ci/services

# The suite runs in TEST_WORKERS parallel pytest-xdist processes, handed one test at a time,
# longest first (pyproject.toml, tests/conftest.py): the end-to-end tests wait on processes,
# timers and rate limits, so four keep two cores busy (docs/architecture/tests.md). Bytecode is written even
# where the environment says not to: every `engine` process the tests start would compile the
# project again. The documentation site is built strictly first: a broken link or anchor fails.
TEST_WORKERS ?= 4

test: install services
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/engine check
	$(BIN)/engine test
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --clean
	PYTHONDONTWRITEBYTECODE= $(BIN)/pytest -q -n $(TEST_WORKERS)

# The documentation site (docs/, mkdocs.yml) into site/; `$(BIN)/mkdocs serve` to read it while editing.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --clean

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

check: install
	$(BIN)/engine check
	$(BIN)/engine test

# Re-resolve both locks to the newest versions pyproject.toml allows (commit the result).
lock: install
	$(BIN)/pip install -q pip-tools
	$(LOCK) --upgrade --output-file requirements.lock pyproject.toml
	$(LOCK) --upgrade --extra test --output-file requirements-test.lock pyproject.toml
