# Two commands on a fresh machine: `make run` (the connector on embedded SQLite) and `make test`.
# Both install from uv.lock (pinned versions, hashes), as Heroku's Python buildpack does
# (`uv sync --locked`): what is tested is what deploys. `make run` installs what running
# needs; `make test` adds the `test` extra. uv itself is pip-installed into .tools/.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.9.28
UV := .tools/bin/uv
# The machine's python3 (the lock covers every Python from 3.11; Heroku takes .python-version).
UV_SYNC := UV_PROJECT_ENVIRONMENT=$(VENV) UV_PYTHON=$(PYTHON) UV_PYTHON_DOWNLOADS=never $(UV) sync --locked

.PHONY: install run test test-fast check browser node-deps schema migration bench clean mutation mutation-report lock

install: $(VENV)/.installed

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet uv==$(UV_VERSION)

# uv compiles the dependencies' bytecode ([tool.uv] compile-bytecode); the project itself is installed editable,
# so its own modules are compiled here: with PYTHONDONTWRITEBYTECODE=1 nothing else would write them.
$(VENV)/.installed: pyproject.toml uv.lock | $(UV)
	$(UV_SYNC) --extra test
	$(BIN)/python -m compileall -q connector
	touch $@

# --inexact: keeps the test extra if `make test` installed it.
$(VENV)/.run-installed: pyproject.toml uv.lock | $(UV)
	$(UV_SYNC) --inexact
	$(BIN)/python -m compileall -q connector
	touch $@

# After a change to pyproject.toml's dependencies: pins them again in uv.lock (commit both).
lock: | $(UV)
	$(UV) lock

run: $(VENV)/.run-installed
	$(BIN)/connector migrate
	$(BIN)/connector serve

# Chromium from Debian, for the dashboard tests (Playwright drives it; no browser download).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

# What the browser tests load (axe-core, analytics.js), pinned in tests/package-lock.json.
node-deps: tests/node_modules/.installed

tests/node_modules/.installed: tests/package.json tests/package-lock.json
	npm ci --prefix tests --ignore-scripts --no-audit --no-fund
	touch $@

test: install browser node-deps
	$(BIN)/pytest

# The tests that need neither a database nor a browser (Spec parsing, identity resolution in memory, the Python
# rule evaluator on given profiles, personas, settings, trait names, ...): about half a minute. CI runs them first.
# docs/testing.md describes the tiers and the layout of tests/.
test-fast: install
	$(BIN)/pytest -m "not database and not browser"

# Lint, format check, strict typing of connector/ and tests/, and the import layers (scripts/check; pyproject.toml
# configures each); CI runs it before the tests.
check: install
	BIN=$(BIN) scripts/check

schema: install
	$(BIN)/connector schema

bench: install
	$(BIN)/python benchmarks/accept.py
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/outbound.py
	$(BIN)/python benchmarks/segments.py
	$(BIN)/python benchmarks/processing.py

clean:
	rm -rf $(VENV) .tools connector.db connector.db-wal connector.db-shm .pytest_cache mutants

# Mutation testing with mutmut over the modules named in pyproject.toml's [tool.mutmut]
# (docs/testing.md). Not part of `make test` or CI: it takes over an hour. On SQLite only; each
# mutant is tested by its module's test files ([tool.mutation_scope], tests/support/mutation_scope.py).
# MUTANTS narrows it (make mutation MUTANTS='connector.core.spec.*'); MUTATION_TIME stops it cleanly
# after a while (MUTATION_TIME=30m): results are kept in mutants/ and the next run goes on with
# the mutants not yet checked (and the functions changed since). `make clean` drops them.
MUTANTS ?=
MUTATION_JOBS ?= 2
MUTATION_TIME ?= 0
mutation: install $(VENV)/.mutation-installed
	mkdir -p /tmp/connector-mutmut
	TEST_BACKENDS=sqlite PYTEST_PLUGINS=tests.support.mutation_scope PYTEST_DEBUG_TEMPROOT=/tmp/connector-mutmut \
		timeout -s INT $(MUTATION_TIME) $(BIN)/mutmut run --max-children $(MUTATION_JOBS) $(MUTANTS) \
		|| test $$? -eq 124
	$(MAKE) --no-print-directory mutation-report

mutation-report: $(VENV)/.mutation-installed
	$(BIN)/mutmut results
	$(BIN)/python scripts/mutation_summary.py

$(VENV)/.mutation-installed: pyproject.toml uv.lock $(VENV)/.installed
	$(UV_SYNC) --extra test --extra mutation
	touch $@

# A new Alembic revision from the change to connector/core/models.py: make migration m="what changes".
migration: install
	@test -n "$(m)" || { echo 'usage: make migration m="what changes"'; exit 2; }
	rm -f /tmp/connector-migration.db
	DATABASE_URL=sqlite:////tmp/connector-migration.db $(BIN)/alembic -c connector/alembic.ini upgrade head
	DATABASE_URL=sqlite:////tmp/connector-migration.db $(BIN)/alembic -c connector/alembic.ini \
		revision --autogenerate -m "$(m)"
