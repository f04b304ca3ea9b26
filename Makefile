# interlock: make targets. `make test` is the README's test command (CI runs it).
VENV := .venv
BIN := $(VENV)/bin
PYTEST := $(BIN)/pytest

.PHONY: install test test-unit test-lab test-openstack lint bench demo clean

$(VENV)/.installed: pyproject.toml constraints.txt install.sh
	./install.sh --no-demo

install: $(VENV)/.installed

## Everything CI checks: lint, unit tests, lab integration tests, the OpenStack clouds.
test: install lint test-unit test-lab test-openstack

test-unit: install
	$(PYTEST) -q --durations=5 -m "not lab"

## Integration tests against real sandbox nodes (root, namespaces).
test-lab: install
	$(PYTEST) -q --durations=12 -m "lab and not openstack"

## The seven OpenStack clouds on the lab's real OpenStack (starts it once, ~1 min).
test-openstack: install
	$(PYTEST) -q --durations=8 -m openstack

lint: install
	$(BIN)/ruff check src tests bench lab-openstack
	$(BIN)/ruff format --check src tests bench lab-openstack
	$(BIN)/mypy

bench: install
	$(BIN)/python bench/cli.py
	$(BIN)/python bench/nodes.py
	$(BIN)/python bench/allocate.py
	$(BIN)/python bench/allocate.py --node-key user-data
	$(BIN)/python bench/allocate.py --nodes 1000
	$(BIN)/python bench/scale.py --nodes 1000
	$(BIN)/python bench/secure.py
	$(BIN)/python bench/openstack_lab.py
	$(BIN)/python bench/conform.py
	$(BIN)/python bench/compose.py
	$(BIN)/python bench/kubernetes.py

demo: install
	$(BIN)/interlock lab up
