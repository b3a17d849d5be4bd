# The two commands: `make run` (set up and serve the platform with demo data) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run install migrate demo test lint format soak bench worker beat clean

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements.txt
	touch $@

install: $(VENV)/.installed

migrate: install
	$(PY) manage.py migrate --noinput

demo: migrate
	$(PY) manage.py seed_demo

# First command: install, migrate, load demo data, serve on http://$(HOST):$(PORT) with the
# periodic jobs running in-process (embedded default: SQLite, no broker needed).
run: demo
	@echo "Serving on http://$(HOST):$(PORT)/  (operator console /admin/, portal /portal/, API docs /api/docs/)"
	$(PY) manage.py run_embedded $(HOST):$(PORT)

# Second command: lint, format check and the whole suite. DATABASE_URL / REDIS_URL choose what
# it runs against (unset: SQLite and in-process tasks; PostgreSQL-/Redis-only tests skip).
test: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pytest -m "not soak" $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

soak: install
	$(VENV)/bin/pytest -m soak -s $(PYTEST_ARGS)

# Needs PostgreSQL and Redis running, wrk and pgbench (apt-get install wrk postgresql-client);
# py-spy (pip install py-spy) adds a profile of where the time goes.
bench: install
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	# py-spy samples the platform during each workload: the results say where the time goes.
	test -x $(VENV)/bin/py-spy || $(VENV)/bin/pip install -q py-spy
	$(PY) -m bench

worker: install
	$(VENV)/bin/celery -A loyalty worker --loglevel=INFO --concurrency=2

beat: install
	$(VENV)/bin/celery -A loyalty beat --loglevel=INFO

clean:
	rm -rf var .pytest_cache .ruff_cache
