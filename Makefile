# Wayang Plugin Operator. `make help` lists the targets; README.md explains them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

.PHONY: help venv manifests lint unit test demo bench clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@echo "==> creating $(VENV) and installing wayang-operator with dev tools"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@$(BIN)/python -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP) ## Create .venv and install the package with its dev tools

manifests: $(STAMP) ## Regenerate crds/ and schemas/ from the typed models
	@$(BIN)/python -m wayang_operator.schemagen .

lint: $(STAMP) ## ruff (lint + format check), mypy --strict, import-layer contracts
	@echo "==> ruff"; $(BIN)/ruff check . && $(BIN)/ruff format --check .
	@echo "==> mypy --strict"; $(BIN)/mypy
	@echo "==> import layers"; $(BIN)/lint-imports --no-cache

unit: $(STAMP) ## Unit and integration tests only (no lint)
	@$(BIN)/pytest

test: lint unit ## Lint, then unit and integration tests (the README's test command)

demo: $(STAMP) ## The main job: install, then validate the examples
	@echo "==> wayang validate examples/"
	@$(BIN)/wayang validate --verbose examples/

bench: $(STAMP) ## Benchmarks: validate 1,000 manifests, printing ratios against a baseline
	@$(BIN)/python tests/bench/bench_validate.py

clean: ## Remove the virtualenv and tool caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
