# One entry point. `make demo` runs the main job on the embedded local stack; `make test` is the gate
# (format, lint, types, template checks, every test) that CI runs too. Both bootstrap .venv from the lock.
SHELL := /bin/bash
PYTHON ?= $(shell for p in python3.12 python3.13 python3.11 python3; do command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.bootstrapped
SAM_VENV := .sam-venv
SAM_STAMP := $(SAM_VENV)/.bootstrapped
SAM_CLI_VERSION := 1.151.0
N ?= 10000
PYTEST_ARGS ?=

.PHONY: venv demo test lint types template-checks unit sam-checks bench clean format

$(STAMP): requirements.lock pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.11 or newer is needed on PATH"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/espmail local demo

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

types: $(STAMP)
	$(BIN)/mypy layers/shared functions infra tests bench

template-checks: $(STAMP)
	$(BIN)/cfn-lint template.yaml

unit: $(STAMP)
	$(BIN)/pytest -q -n 2 $(PYTEST_ARGS)

test: lint types template-checks unit

bench: $(STAMP)
	$(BIN)/python -m bench.run --recipients $(N)

clean:
	rm -rf $(VENV) $(SAM_VENV) .aws-sam .mypy_cache .ruff_cache .hypothesis
