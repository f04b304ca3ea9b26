# interlock: make targets. `make test` is the README's test command (CI runs it).
VENV := .venv
BIN := $(VENV)/bin
PYTEST := $(BIN)/pytest

.PHONY: install test test-unit test-lab lint bench demo clean

$(VENV)/.installed: pyproject.toml install.sh
	./install.sh --no-demo

install: $(VENV)/.installed

## Everything CI checks: lint, unit tests, lab integration tests.
test: install lint test-unit test-lab

test-unit: install
	$(PYTEST) -q -m "not lab"

## Integration tests against real sandbox nodes (root, namespaces).
test-lab: install
	$(PYTEST) -q -m lab

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

bench: install
	$(BIN)/python bench/nodes.py
	$(BIN)/python bench/allocate.py
	$(BIN)/python bench/secure.py

demo: install
	$(BIN)/interlock lab up
