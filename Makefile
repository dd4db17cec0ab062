# The README's two commands: `make run` and `make test`. Both need only Python 3.11+ (and make).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000
# Webhook and sandbox URLs the portal hands out must match the port it serves on.
export PUBLIC_BASE_URL ?= http://127.0.0.1:$(PORT)
INSTALLED := $(VENV)/.installed
# The Procfile's commands (gunicorn, celery) come from the virtualenv.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install run test lint typecheck imports check-deploy clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(INSTALLED)

install: $(INSTALLED)

## Start web, Celery worker and beat on the embedded default (SQLite, filesystem broker) with demo data.
run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	$(BIN)/python manage.py seed_demo
	@echo "Starting the portal on http://127.0.0.1:$(PORT)/admin/  (Ctrl-C stops everything)"
	$(BIN)/python -m portal.runall --port $(PORT)

## The whole test suite (SQLite and the embedded broker unless DATABASE_URL / REDIS_URL are set).
test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python manage.py makemigrations --check --dry-run
	$(MAKE) typecheck
	$(MAKE) imports

## mypy with django-stubs ([tool.mypy] in pyproject.toml: strict for the access rules and the Wavix and 3CX clients).
typecheck: install
	$(BIN)/mypy

## The architecture's import contracts ([tool.importlinter] in pyproject.toml).
imports: install
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) var
