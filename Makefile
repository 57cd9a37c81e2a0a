# The two set-up commands: `make demo` (classify the bundled sample photos) and `make test`.
# Each creates .venv with everything it needs on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.core: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.all: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[all]' -c constraints.txt
	touch $@ $(VENV)/.core

demo: $(VENV)/.core
	$(BIN)/python scripts/demo.py

test: $(VENV)/.all
	$(BIN)/python -m pytest -q

lint: $(VENV)/.all
	$(BIN)/ruff check src tests scripts tools
