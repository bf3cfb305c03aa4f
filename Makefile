# newsflow's everyday commands. The virtualenv is created on first use.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-all lint bench install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install newsflow with its dev tools

demo: $(STAMP) ## run the pipeline end to end on the bundled example pages
	$(BIN)/newsflow demo

test: $(STAMP) ## the test suite (unit + integration: real Redis, real workers, local HTTP)
	$(BIN)/pytest -q -m "not slow and not multihost"

test-all: $(STAMP) ## everything, including the fault-injection suite
	$(BIN)/pytest -q

lint: $(STAMP) ## ruff, mypy, and the import layers (config <- newsflow <- tasks <- workers)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python bench/extraction.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
