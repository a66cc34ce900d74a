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

.PHONY: help setup lock hooks data review monthly lab test test-fast golden browser-deps spark-deps bench bench-loop lint format clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# constraints.txt pins every package to the versions the golden outputs (tests/golden/) were
# recorded with: a fresh install otherwise takes whatever the index holds that day, and a
# new numpy or pandas moves the CLV fits' last digits (the golden test compares to 1e-9).
# pyproject.toml keeps the ranges a user's own install may take. `make lock` refreshes it.
CONSTRAINTS := constraints.txt

$(STAMP): pyproject.toml $(CONSTRAINTS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e '.[dev,lab]'
	@touch $(STAMP)

lock: setup ## Pin constraints.txt to the venv's current packages (then re-record: make golden)
	{ echo "# Every package at the version the golden outputs (tests/golden/) were recorded with;"; \
	  echo "# make setup installs with these constraints. Refresh: make lock, then make golden."; \
	  $(BIN)/python -m pip freeze --exclude-editable | grep -v '^#'; } > $(CONSTRAINTS)

setup: $(STAMP) hooks ## Create .venv and install fupan with its dev and Lab tools (idempotent)

# nbstripout as a git filter: `git add` stores a notebook without outputs, execution counts
# or widget state (cell ids kept), while the file in the working tree keeps them. A notebook
# saved in Lab after a run therefore never dirties a commit. Outside a git checkout: nothing.
# Besides outputs: what a Lab save or a papermill run adds to a notebook (the kernel's
# language details, papermill's timings and its injected-parameters cell).
LANG_KEYS := codemirror_mode file_extension mimetype nbconvert_exporter pygments_lexer version
NBSTRIP := -m nbstripout --keep-id --drop-tagged-cells injected-parameters \
  --extra-keys '$(addprefix metadata.language_info.,$(LANG_KEYS)) metadata.papermill cell.metadata.papermill'

hooks: $(STAMP) ## Strip notebook outputs on git add (nbstripout filter; part of setup)
	@if git rev-parse --git-dir >/dev/null 2>&1; then \
	  py="\"$$(cd $(BIN) && pwd)/python\""; \
	  git config filter.nbstripout.clean "$$py $(NBSTRIP)" && \
	  git config filter.nbstripout.smudge cat && \
	  git config filter.nbstripout.required true && \
	  git config diff.ipynb.textconv "$$py $(NBSTRIP) -t"; \
	fi

$(DEMO)/truth.json: | $(STAMP)
	$(BIN)/fupan demo-data --out $(DEMO) --customers $(CUSTOMERS) --seed $(SEED)

data: $(DEMO)/truth.json ## Generate the demo dataset (5,000 customers) into data/demo

review: setup data ## Run the annual review on the demo data and print the deck's path
	$(BIN)/fupan review --params $(PARAMS)

monthly: setup data ## Render the monthly KPI deck (MONTH=YYYY-MM, default last month)
	$(BIN)/fupan monthly --month $(MONTH) --params params/monthly.yaml

lab: setup data ## Open the notebooks in JupyterLab (classic: .venv/bin/jupyter notebook)
	$(BIN)/jupyter lab notebooks/

browser-deps: ## Install Debian's headless Chromium and CJK fonts for the browser tests (when absent)
	@if ! command -v chromium >/dev/null 2>&1 || ! fc-list 2>/dev/null | grep -qi "Noto Sans CJK"; then \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium and fonts-noto-cjk from Debian"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk >/dev/null) \
	      || echo "could not install chromium: browser tests will be skipped"; \
	  else echo "chromium not installed and cannot apt-get: browser tests will be skipped"; fi; \
	fi

spark-deps: setup ## Install Java (Debian's default-jre-headless, when absent) and the spark extra, for engine: spark
	@if ! command -v java >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Java (default-jre-headless) from Debian"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jre-headless >/dev/null; \
	  else \
	    echo "engine: spark needs Java 17 or later: sudo apt-get install default-jre-headless (Debian/Ubuntu)"; exit 1; \
	  fi; \
	fi
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e '.[dev,lab,spark]'

# Two workers (pytest-xdist; JOBS=1 for one process): tests that share one review run on
# one worker (the groups in tests/conftest.py), the heaviest first. nbval runs each notebook
# in one kernel (loadscope: a notebook's cells stay together). --durations: every run's log
# lists its slowest tests, so the time can be read off CI.
JOBS ?= 2
XDIST = $(if $(filter-out 1,$(JOBS)),-n $(JOBS))
GROUPED = $(XDIST) $(if $(XDIST),--dist loadgroup --no-loadscope-reorder)
test: setup data browser-deps ## Run every test: unit, statistical references, notebooks (nbval), end to end, browser
	$(BIN)/python -m pytest $(GROUPED) --durations=50 $(PYTEST_ARGS)
	$(BIN)/python -m pytest $(XDIST) $(if $(XDIST),--dist loadscope) --nbval-lax -p no:cacheprovider notebooks/ $(PYTEST_ARGS)

test-fast: setup ## Unit tests only (no end-to-end runs, no notebooks)
	$(BIN)/python -m pytest $(GROUPED) -m "not slow" $(PYTEST_ARGS)

golden: setup ## Re-record tests/golden/ (demo hashes, a 300-customer review's results, the scenario table); a few minutes
	$(BIN)/python tools/golden.py record

bench: setup ## Scale ladder, the analyst's loop, peer baselines and the Spark row (benchmarks/results/)
	$(BIN)/python benchmarks/cli_startup.py
	$(BIN)/python benchmarks/loop.py
	$(BIN)/python benchmarks/run.py --keep-data
	$(BIN)/python benchmarks/spark_row.py

bench-loop: setup ## The loop rows only: 5k review + rerun, 100k CSV load vs floor and review (~5 min)
	$(BIN)/python benchmarks/loop.py

lint: setup ## ruff check (code and notebooks) and format check (code)
	$(BIN)/ruff check lib tests benchmarks tools notebooks
	$(BIN)/ruff format --check lib tests benchmarks tools

format: setup ## Apply ruff fixes and formatting
	$(BIN)/ruff check --fix lib tests benchmarks tools notebooks
	$(BIN)/ruff format lib tests benchmarks tools

clean: ## Remove run outputs and caches (keeps .venv and data/)
	rm -rf reports/*/ reports/.*.tmp-* .pytest_cache .ruff_cache
	find . -name __pycache__ -not -path "./$(VENV)/*" -prune -exec rm -rf {} +
