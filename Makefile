# The README's commands. `make run` and `make test` work on a fresh Debian machine.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test test-postgres soak bench bench-smoke lint system-deps install migrate schema js-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Installs once, and again only when pyproject.toml changes (the stamp lives in the venv,
# so a new venv installs too): `make run` on a set-up checkout starts at once.
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --disable-pip-version-check -q -e '.[dev]'
	touch $@

# redis-server, PostgreSQL, Chromium (the Playwright browser test), nginx (the deployment
# guide's proxy) and, if missing, Node.js from Debian's packages, for the tests.
system-deps:
	@if ! command -v redis-server >/dev/null || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
		|| ! test -x /usr/bin/chromium || ! test -x /usr/sbin/nginx; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server postgresql chromium nginx >/dev/null; \
	fi
	@# Node.js runs the real JavaScript clients (graphql-sse, Apollo Client) in tests/js.
	@if ! command -v npm >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; \
	fi

# The real JavaScript clients the tests drive (graphql-sse, Apollo Client), from the lockfile.
tests/js/node_modules/.package-lock.json: tests/js/package-lock.json | system-deps
	cd tests/js && npm ci --no-audit --no-fund --silent

js-deps: tests/js/node_modules/.package-lock.json

migrate: install
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py migrate --noinput

# Development server: SQLite, in-process channel layer, DEBUG on.
run: migrate
	DEBUG=$${DEBUG:-1} $(BIN)/python -m backend.server -b $(HOST) -p $(PORT) asgi:application

test: install system-deps js-deps
	$(BIN)/pytest

# The same suite on a throwaway PostgreSQL cluster (bin/with-postgres starts and removes it).
test-postgres: install system-deps js-deps
	bin/with-postgres $(BIN)/pytest

# Long fault scenarios (not in `make test`): 50,000 activities against a stalled reader.
soak: install system-deps
	$(BIN)/pytest -m soak -s

# The fan-out benchmark matrix (bench/README.md); bench-smoke is CI's small version.
bench: install system-deps
	$(BIN)/python -m bench.run

bench-smoke: install system-deps
	$(BIN)/python -m bench.run --quick

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	SECRET_KEY=lint $(BIN)/mypy .

# Regenerate schema.graphql from the code (tests/schema/test_schema_file.py fails on drift).
schema: install
	DEBUG=1 $(BIN)/python manage.py export_schema schema.schema:schema --path schema.graphql
