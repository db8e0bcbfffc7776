# The two commands a newcomer needs are `make demo` and `make test`; everything else is plumbing
# they call. Each target installs what it needs and is idempotent.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
export GOTOOLCHAIN := local
# The demo's Prefect database: sqlite (no set-up) or postgres (`make demo PREFECT_DB=postgres`).
PREFECT_DB ?= sqlite
export LAB_PREFECT_DB := $(PREFECT_DB)

.PHONY: demo test deps system-deps python-deps lab-bin lab-up lab-down lab-status lint typecheck unit lab-test clean bench bench-calls faults fleet

demo: deps lab-bin
	$(PY) -m lab up
	$(PY) -m lab demo

test: deps lab-bin
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(VENV)/bin/lint-imports --no-logo
	$(PY) -m pytest

deps: system-deps python-deps

system-deps:
	@bash scripts/system-deps.sh

python-deps: $(STAMP)

$(STAMP): pyproject.toml
	@echo "==> creating the Python environment in $(VENV)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

lab-bin: python-deps
	$(PY) -m lab build

lab-up: deps lab-bin
	$(PY) -m lab up

lab-down: python-deps
	$(PY) -m lab down

lab-status: python-deps
	$(PY) -m lab status

lint: python-deps
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: python-deps
	$(PY) -m mypy
	$(VENV)/bin/lint-imports --no-logo

unit: python-deps
	$(PY) -m pytest -m "not lab"

lab-test: deps lab-bin
	$(PY) -m pytest -m lab

clean:
	-$(PY) -m lab down
	rm -rf .lab

bench: deps lab-bin
	$(PY) benchmarks/lab_figures.py
	$(PY) -m lab up && $(PY) benchmarks/rotation.py
	$(PY) benchmarks/rebuild.py

bench-calls: deps lab-bin  # vSphere calls of a golden-image build: product vs a govc script
	$(PY) benchmarks/vcenter_calls.py

faults: deps lab-bin  # the fault matrix, every family (vCenter, SSH, Kubernetes API, DNS): .artifacts/faults.md
	$(PY) benchmarks/fault_matrix.py $(FAULTS_ARGS)

# The fleet benchmark (issue 12): builds on SQLite and PostgreSQL, MachineSets x machines; plot in
# .artifacts/fleet.png. Scale down with FLEET_ARGS="--builds 2 --sets 1 --machines 2".
FLEET_ARGS ?=
fleet: deps lab-bin
	$(PY) benchmarks/fleet.py $(FLEET_ARGS)
