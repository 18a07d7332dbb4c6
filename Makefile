# The README's two commands: `make serve` and `make test`. Each installs what it
# needs into .venv first, so both work on a fresh machine with python3 >= 3.11.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SERVE_ARGS ?=

.PHONY: serve test install dev lint typecheck unit e2e bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/python -m pip install -q -e .

dev: $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'

serve: install
	$(BIN)/lpms serve $(SERVE_ARGS)

lint: dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: dev
	$(BIN)/mypy

unit: dev
	$(BIN)/pytest tests/unit -q

e2e: dev
	$(BIN)/pytest tests/e2e -q

test: lint typecheck
	$(BIN)/pytest -q

bench: dev
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
