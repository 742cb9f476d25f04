# Wayang Plugin Operator. `make help` lists the targets; README.md explains them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

.PHONY: help venv manifests lint tools postgres unit test e2e cluster-up cluster-down cluster-status demo demo-check images samples chaos chaos-smoke bench clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@echo "==> creating $(VENV) and installing wayang-operator with dev tools"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@$(BIN)/python -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP) ## Create .venv and install the package with its dev tools

manifests: $(STAMP) ## Regenerate crds/, schemas/, the chart's webhooks, docs/policy.md's tables, the Argo CD health tables and examples/plugins/echo-*.yaml from the code
	@$(BIN)/python -m wayang_operator.schemagen .
	@$(BIN)/python -m wayang_operator.controller.webhooks charts/wayang-operator/files/webhooks.yaml
	@$(BIN)/python -m wayang_operator.schemagen.policydoc docs/policy.md
	@$(BIN)/python -m wayang_operator.schemagen.argocd argocd/wayang.io/Plugin/health.lua
	@$(BIN)/python runtime-images/build.py --samples --out .images/samples --examples examples/plugins >/dev/null

lint: $(STAMP) ## ruff (lint + format check), mypy --strict, import-layer contracts
	@echo "==> ruff"; $(BIN)/ruff check . && $(BIN)/ruff format --check .
	@echo "==> mypy --strict"; $(BIN)/mypy
	@echo "==> import layers"; $(BIN)/lint-imports --no-cache

tools: $(STAMP) ## Build trivy, helm and the OCI registry (pinned, from their Go modules; cached): the scans, the chart and the OCI tests run them for real
	@$(BIN)/python -m e2e.localcluster.build trivy helm registry

postgres: $(STAMP) ## Install PostgreSQL from the OS packages if missing (the audit store's tests start their own server)
	@$(BIN)/python -c "from e2e.localpg import ensure_installed; ensure_installed()"

unit: tools postgres ## Unit and integration tests only (no lint)
	@$(BIN)/pytest

test: lint unit ## Lint, then unit and integration tests (the README's test command)

e2e: tools postgres ## e2e tier on a real API server: a local cluster of its own (built from source), or E2E_ARGS=--kubeconfig=PATH
	@$(BIN)/python -m e2e.localcluster.build
	@$(BIN)/pytest e2e $(E2E_ARGS)

cluster-up: $(STAMP) ## Build (cached) and start the local control plane; adds context wayang-local to your kubeconfig
	@$(BIN)/python -m e2e.localcluster up

cluster-down: $(STAMP) ## Stop the local control plane and remove its kubeconfig entries
	@$(BIN)/python -m e2e.localcluster down

cluster-status: $(STAMP) ## Show the local control plane's processes and whether the API server answers
	@$(BIN)/python -m e2e.localcluster status

demo: tools ## The whole story on a fresh local cluster: chart, publish, approve, run, audit (root)
	@$(BIN)/python -m e2e.demo

demo-check: $(STAMP) ## Check that the demo's cluster is as make demo left it (CI runs it after make e2e)
	@$(BIN)/python -m e2e.demo --check

images: $(STAMP) ## Build the runtime and sample plugin images as OCI archives (no Docker)
	@$(BIN)/python runtime-images/build.py --out .images

samples: $(STAMP) ## Build the echo sample's artifact of every hosted type (wheel, wasm, jar) into .images/samples
	@$(BIN)/python runtime-images/build.py --samples --out .images/samples

chaos: $(STAMP) ## Faults during a 200-plugin rollout, two replicas (SEED=N repeats a run): kills, stops, API server and etcd restarts
	@$(BIN)/python -m e2e.chaos $(if $(SEED),--seed $(SEED))

chaos-smoke: $(STAMP) ## The short chaos run CI makes: 40 plugins, 5 leader kills, 2 API server restarts
	@$(BIN)/python -m e2e.chaos --smoke --plugins 40 --kills 5 $(if $(SEED),--seed $(SEED))

bench: $(STAMP) ## Benchmarks with ratios against same-run baselines (COLD=1 adds a cold Go build)
	@$(BIN)/python tests/bench/bench_sdk.py
	@$(BIN)/python tests/bench/bench_validate.py
	@$(BIN)/python -m e2e.localcluster.bench $(if $(COLD),--cold)
	@$(BIN)/python -m e2e.bench_operator
	@$(BIN)/python -m e2e.bench_scan
	@$(BIN)/python -m e2e.bench_audit
	@$(BIN)/python -m e2e.bench_hosts
	@$(BIN)/python -m e2e.bench_workloads

clean: ## Remove the virtualenv and tool caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .cluster
