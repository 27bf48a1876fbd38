# Two commands on a fresh machine: `make run` (the connector on embedded SQLite) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install run test browser schema migration bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

run: install
	$(BIN)/connector migrate
	$(BIN)/connector serve

# Chromium from Debian, for the dashboard tests (Playwright drives it; no browser download).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

test: install browser
	$(BIN)/pytest

schema: install
	$(BIN)/connector schema

bench: install
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/outbound.py
	$(BIN)/python benchmarks/segments.py

clean:
	rm -rf $(VENV) connector.db connector.db-wal connector.db-shm .pytest_cache

# A new Alembic revision from the change to connector/models.py: make migration m="what changes".
migration: install
	@test -n "$(m)" || { echo 'usage: make migration m="what changes"'; exit 2; }
	rm -f /tmp/connector-migration.db
	DATABASE_URL=sqlite:////tmp/connector-migration.db $(BIN)/alembic -c connector/alembic.ini upgrade head
	DATABASE_URL=sqlite:////tmp/connector-migration.db $(BIN)/alembic -c connector/alembic.ini \
		revision --autogenerate -m "$(m)"
