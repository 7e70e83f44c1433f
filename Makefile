# Every target does its own set-up (creates .venv and installs) on a fresh machine.
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DAGSTER_HOME ?= $(CURDIR)/.dagster
ARGS ?=

.PHONY: install run test ui lint format data bench clean dashboard paper defs

$(STAMP): pyproject.toml scripts/install.sh
	VENV=$(VENV) bash scripts/install.sh

install: $(STAMP)

run: $(STAMP)  ## the main job end-to-end on the default data, then the KPI table
	$(BIN)/cryptoml run $(ARGS)

test: $(STAMP)  ## the test suite (CI runs exactly this)
	$(BIN)/pytest cryptoml_pipeline_tests

ui: $(STAMP)  ## Dagster web UI on http://127.0.0.1:3000
	$(BIN)/python scripts/dagster_dev.py

defs: $(STAMP)  ## `dg check defs` (the code location loads) and `dg list defs`
	$(BIN)/dg check defs
	$(BIN)/dg list defs

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

data: $(STAMP)  ## download candles + funding via ccxt into ./data (needs network)
	$(BIN)/cryptoml data --data-dir data $(ARGS)

dashboard: $(STAMP)  ## monitoring dashboard on http://127.0.0.1:8050 (registry, tracker, paper)
	$(BIN)/cryptoml dashboard $(ARGS)

paper: $(STAMP)  ## paper-trade the deployed model, e.g. ARGS="--start 2025-09-01 --end 2025-09-08"
	$(BIN)/cryptoml paper $(ARGS)

bench: $(STAMP)  ## every benchmark -> benchmarks/results/*.json (needs ../shared/data)
	$(BIN)/python benchmarks/throughput.py
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/features.py
	$(BIN)/python benchmarks/backtest.py
	$(BIN)/python benchmarks/signal_latency.py
	$(BIN)/python benchmarks/training_step.py

clean:
	rm -rf output .dagster .pytest_cache .ruff_cache
