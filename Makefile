# The README's two commands: `make serve` and `make test`. Each installs what it
# needs into .venv first, so both work on a fresh machine with python3 >= 3.11.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SERVE_ARGS ?=
BENCH_ARGS ?=
STRESS_ARGS ?=
# hls.js, Shaka Player and mpegts.js (from npm) for the browser playback tests
# (tests/e2e/test_hls_browser.py, test_llhls.py, test_flv_browser.py ...).
# `make test` installs them only where npm exists; elsewhere those tests skip.
BROWSER_DIR := tests/e2e/browser
BROWSER_STAMP := $(BROWSER_DIR)/node_modules/.package-lock.json
NPM := $(shell command -v npm 2>/dev/null)
BROWSER_DEPS := $(if $(NPM),browser-deps)

.PHONY: serve test install dev lint typecheck unit integration e2e test-stress bench bench-transcode bench-distributed bench-concurrency bench-latency bench-soak clean browser-deps

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
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts

typecheck: dev
	$(BIN)/mypy

# Three tiers: unit (sans-IO and pure code, seconds), integration (real encoding and
# muxing with PyAV, the CLI in subprocesses, the fuzz suite), e2e (the real server,
# real clients).
unit: dev
	$(BIN)/pytest tests/unit -q

integration: dev
	$(BIN)/pytest tests/integration -q

e2e: dev $(BROWSER_DEPS)
	$(BIN)/pytest tests/e2e -q

# The e2e tier while a CPU hog keeps every core busy: no test may need an idle machine.
test-stress: dev $(BROWSER_DEPS)
	$(BIN)/python scripts/stress.py tests/e2e -q $(STRESS_ARGS)

test: lint typecheck $(BROWSER_DEPS)
	$(BIN)/pytest -q

browser-deps: $(BROWSER_STAMP)

# npm ci writes node_modules/.package-lock.json; it is stale once either file
# it was made from changes.
$(BROWSER_STAMP): $(BROWSER_DIR)/package.json $(BROWSER_DIR)/package-lock.json
	npm ci --prefix $(BROWSER_DIR) --no-audit --no-fund
	@touch $@

bench: dev
	$(BIN)/python bench/ingest.py $(BENCH_ARGS)

bench-transcode: dev
	$(BIN)/python bench/transcode.py $(BENCH_ARGS)

bench-distributed: dev
	$(BIN)/python bench/distributed.py $(BENCH_ARGS)

bench-concurrency: dev
	$(BIN)/python bench/concurrency.py $(BENCH_ARGS)

bench-latency: dev browser-deps
	$(BIN)/python bench/latency.py $(BENCH_ARGS)

bench-soak: dev
	$(BIN)/python bench/soak.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
	rm -rf $(BROWSER_DIR)/node_modules
