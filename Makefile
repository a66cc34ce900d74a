# fupan — 复盘. `make` lists the targets; `make review` and `make test` do everything on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.fupan-installed
DEMO := data/demo
CUSTOMERS ?= 5000
SEED ?= 42
PARAMS ?= params/annual_review.yaml
MONTH ?= $(shell date -d "$$(date +%Y-%m-01) -1 day" +%Y-%m)
PYTEST_ARGS ?=

.PHONY: help setup data review monthly lab test test-fast browser-deps bench lint format clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP) ## Create .venv and install fupan with its dev tools (idempotent)

$(DEMO)/truth.json: | $(STAMP)
	$(BIN)/fupan demo-data --out $(DEMO) --customers $(CUSTOMERS) --seed $(SEED)

data: $(DEMO)/truth.json ## Generate the demo dataset (5,000 customers) into data/demo

review: setup data ## Run the annual review on the demo data and print the deck's path
	$(BIN)/fupan review --params $(PARAMS)

monthly: setup data ## Render the monthly KPI deck (MONTH=YYYY-MM, default last month)
	$(BIN)/fupan monthly --month $(MONTH) --params params/monthly.yaml

lab: setup data ## Open the notebooks in JupyterLab
	$(BIN)/jupyter lab notebooks/

browser-deps: ## Install Debian's headless Chromium and CJK fonts for the browser tests (when absent)
	@if ! command -v chromium >/dev/null 2>&1 || ! fc-list 2>/dev/null | grep -qi "Noto Sans CJK"; then \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium and fonts-noto-cjk from Debian"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk >/dev/null) \
	      || echo "could not install chromium: browser tests will be skipped"; \
	  else echo "chromium not installed and cannot apt-get: browser tests will be skipped"; fi; \
	fi

test: setup data browser-deps ## Run every test: unit, statistical references, notebooks (nbval), end to end, browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	$(BIN)/python -m pytest --nbval-lax -p no:cacheprovider notebooks/ $(PYTEST_ARGS)

test-fast: setup ## Unit tests only (no end-to-end runs, no notebooks)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

bench: setup ## Scale ladder and peer baselines (writes benchmarks/results/)
	$(BIN)/python benchmarks/cli_startup.py
	$(BIN)/python benchmarks/run.py

lint: setup ## ruff check and format check
	$(BIN)/ruff check lib tests benchmarks tools
	$(BIN)/ruff format --check lib tests benchmarks tools

format: setup ## Apply ruff fixes and formatting
	$(BIN)/ruff check --fix lib tests benchmarks tools
	$(BIN)/ruff format lib tests benchmarks tools

clean: ## Remove run outputs and caches (keeps .venv and data/)
	rm -rf reports/*/ reports/.*.tmp-* .pytest_cache .ruff_cache
	find . -name __pycache__ -not -path "./$(VENV)/*" -prune -exec rm -rf {} +
