# One entry point. `make demo` runs the main job on the embedded local stack; `make test` is the gate
# (format, lint, types, template checks, every test) that CI runs too. Both bootstrap .venv from the lock.
SHELL := /bin/bash
PYTHON ?= $(shell for p in python3.12 python3.13 python3.11 python3; do command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.bootstrapped
SAM_VENV := .sam-venv
SAM_STAMP := $(SAM_VENV)/.bootstrapped
# A python3.12 for `sam build` (the Lambda runtime): on PATH, or one pyenv installed.
PY312_DIR ?= $(shell { command -v python3.12 >/dev/null 2>&1 && python3.12 -c 'pass' 2>/dev/null && dirname $$(command -v python3.12); } || { ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.12*/bin 2>/dev/null | tail -n 1; })
N ?= 10000
PYTEST_ARGS ?=

.PHONY: venv demo test lint types template-checks unit sam-checks bench clean format build deploy deploy-check

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
	$(BIN)/mypy layers/shared infra tests $(wildcard functions/*/*.py) $(wildcard bench/*.py)

template-checks: $(STAMP)
	$(BIN)/cfn-lint template.yaml

unit: $(STAMP)
	$(BIN)/pytest -q -n 2 $(PYTEST_ARGS)

# aws-sam-cli pins its own boto3, so it lives in its own virtual environment. `sam build` of python3.12
# functions needs a python3.12 on PATH; without one the build step says so and the gate fails.
$(SAM_STAMP): requirements-sam.lock
	@test -n "$(PYTHON)" || { echo "Python 3.11 or newer is needed on PATH"; exit 1; }
	@test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-sam.lock
	@touch $@

sam-checks: $(SAM_STAMP)
	SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam validate --lint --region us-east-1
	@test -n "$(PY312_DIR)" || { echo "sam build needs a python3.12 (the functions' runtime) on PATH"; exit 1; }
	PATH="$(PY312_DIR):$$PATH" SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam build --build-dir .aws-sam/build --cached --cache-dir .aws-sam/cache >/dev/null
	@echo "sam validate --lint and sam build: ok"

test: lint types template-checks sam-checks unit

# Deploying (README, "Deploying"): `make build` then `make deploy`. Both use the aws-sam-cli of .sam-venv;
# `sam build` needs a python3.12 (the functions' runtime), found as for sam-checks.
SAM_BUILD_ARGS ?=
SAM_DEPLOY_ARGS ?= --guided

build: $(SAM_STAMP)
	@test -n "$(PY312_DIR)" || [[ "$(SAM_BUILD_ARGS)" == *--use-container* ]] || { echo "sam build needs a python3.12 (the functions' runtime): install one (pyenv install 3.12, apt install python3.12, brew install python@3.12), or build in Docker with make build SAM_BUILD_ARGS=--use-container"; exit 1; }
	PATH="$(PY312_DIR):$$PATH" SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam build $(SAM_BUILD_ARGS)

deploy: build
	SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam deploy $(SAM_DEPLOY_ARGS)

# What would make the first deploy fail here (README); e.g. make deploy-check ARGS="--region us-east-1 --site-domain esp.example.org"
deploy-check: $(STAMP)
	$(BIN)/espmail deploy-check $(ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench.run --recipients $(N)

clean:
	rm -rf $(VENV) $(SAM_VENV) .aws-sam .mypy_cache .ruff_cache .hypothesis
