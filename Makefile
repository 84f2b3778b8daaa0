# revtrace — every target sets up what it needs (the virtual environment in .venv).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install demo up test test-fast lint fmt bench resilience soak browser clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install revtrace with its server and dev extras

demo: $(STAMP) ## Run the product on the embedded store with the demo sync engine
	$(BIN)/revtrace demo

up: $(STAMP) ## Run the sidecar (collector, evaluator, dashboard) on the embedded store
	$(BIN)/revtrace up

browser: ## Install Debian's headless Chromium for the browser tests (needs root)
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

test: $(STAMP) browser lint ## Lint, type-check and run the whole test suite
	$(BIN)/pytest $(PYTEST_ARGS)

test-fast: $(STAMP) ## Run the tests without lint and browser set-up
	$(BIN)/pytest -x -q $(PYTEST_ARGS)

lint: $(STAMP) ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: $(STAMP) ## Format the code with ruff
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP) ## Benchmarks: ratios against a baseline measured in the same run
	$(BIN)/python -m bench $(BENCH_ARGS)

resilience: $(STAMP) ## The resilience suite: faults, bad input, load, access (bounded in time)
	$(BIN)/pytest tests/resilience -q $(PYTEST_ARGS)

soak: $(STAMP) ## The resilience suite with the long soak runs
	REVTRACE_SOAK=1 $(BIN)/pytest tests/resilience -q $(PYTEST_ARGS)

clean: ## Remove the virtual environment and local data
	rm -rf $(VENV) .revtrace artifacts .mypy_cache .ruff_cache .pytest_cache
