# The two commands of the README, and the tools around them.
#   make run   set up and run the site with its worker on SQLite (http://127.0.0.1:8000)
#   make test  set up and run the whole test suite on SQLite and on a throwaway PostgreSQL 15

VENV ?= .venv
BIN := $(VENV)/bin
PYTHON := $(BIN)/python
PORT ?= 8000

.DEFAULT_GOAL := help
.PHONY: help install install-dev run test test-fast bench chaos lint format clean

help:
	@echo "make run      set up and run the site with its worker (SQLite, http://127.0.0.1:$(PORT))"
	@echo "make test     set up and run the test suite on SQLite and PostgreSQL 15"
	@echo "make test-fast  the inner loop: SQLite only, without the slow tests (about 30 s)"
	@echo "make bench    measure enqueue, drain and pickup rates on SQLite and PostgreSQL 15"
	@echo "make chaos    kill, pause and cut off real workers on SQLite and PostgreSQL 15; check the guarantees"
	@echo "make lint     ruff, import contracts, mypy on taskqueue/ and a migrations check"
	@echo "make format   format the code with ruff"

$(PYTHON):
	"$$(scripts/find-python)" -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(PYTHON)
	$(PYTHON) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(PYTHON)
	$(PYTHON) -m pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

install: $(VENV)/.runtime
install-dev: $(VENV)/.dev

.env:
	$(PYTHON) scripts/write_env.py

run: install .env
	$(PYTHON) manage.py migrate --noinput
	$(PYTHON) manage.py collectstatic --noinput -v0
	$(PYTHON) manage.py ensure_local_admin --url http://127.0.0.1:$(PORT)/admin/
	PATH="$(CURDIR)/$(BIN):$$PATH" HOST=127.0.0.1 $(BIN)/honcho start --port $(PORT)

test: install-dev
	$(PYTHON) -m scripts.run_tests

test-fast: install-dev
	$(PYTHON) -m pytest -m "not slow" -q

bench: install-dev
	$(PYTHON) -m scripts.bench

chaos: install-dev
	$(PYTHON) -m scripts.chaos

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	ENV_FILE= SECRET_KEY=lint $(BIN)/mypy
	ENV_FILE= SECRET_KEY=lint $(PYTHON) manage.py makemigrations --check --dry-run

format: install-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) staticfiles .pytest_cache .ruff_cache
