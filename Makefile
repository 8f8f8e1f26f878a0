# espace-sante: `make run` serves the demo, `make test` runs every test. Both set themselves up.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# uv if the machine has it, else installed once into .venv-tools from PyPI (a fresh machine has only Python).
UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := $(VENV)-tools/bin/uv
endif
DATA_DIR ?= .data
HOST ?= 127.0.0.1
PORT ?= 8000
T ?= tests

.DEFAULT_GOAL := help
.PHONY: help install run test lint typecheck bench lock clean chromium libmagic messages

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(VENV)-tools/bin/uv:
	$(PY) -m venv $(VENV)-tools
	$(VENV)-tools/bin/pip install -q uv

libmagic: ## Debian's libmagic1, which python-magic reads content types with (usually already there)
	@ldconfig -p | grep -q 'libmagic.so.1 ' || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q libmagic1; }

$(BIN)/.installed: requirements.lock pyproject.toml | $(UV) libmagic
	@test -x $(BIN)/python || $(UV) venv -q --python $(PY) $(VENV)
	$(UV) pip sync -q --python $(BIN)/python requirements.lock
	$(UV) pip install -q --python $(BIN)/python --no-deps -e .
	@touch $@

install: $(BIN)/.installed ## Create .venv from the lock file (uv) with the test extras

lock: | $(UV) ## Re-resolve requirements.lock from pyproject.toml
	$(UV) pip compile -q --python-version 3.11 --extra test --generate-hashes -o requirements.lock pyproject.toml

run: install ## Serve the demo on http://$(HOST):$(PORT) with the embedded PostgreSQL in $(DATA_DIR)
	$(BIN)/espace-sante --data-dir $(DATA_DIR) serve --host $(HOST) --port $(PORT) --demo

chromium: ## Debian's Chromium for the browser tests (CI starts from a clean machine and runs as root)
	@test -x /usr/bin/chromium || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }

test: install chromium ## Run the whole test suite (T=path to run a part)
	$(BIN)/python -m pytest $(T)

lint: install ## ruff, ruff format, mypy --strict and the import rules (lint-imports)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy src
	$(BIN)/lint-imports

LOCALE := src/espace_sante/web/locale
messages: install ## Extract the portal's strings (French, the source) and update the English catalogue to translate
	$(BIN)/pybabel -q extract -F babel.cfg --project espace-sante --omit-header -o $(LOCALE)/messages.pot .
	@test -f $(LOCALE)/en/LC_MESSAGES/messages.po || $(BIN)/pybabel -q init -i $(LOCALE)/messages.pot -d $(LOCALE) -l en
	$(BIN)/pybabel -q update -i $(LOCALE)/messages.pot -d $(LOCALE) -l en --omit-header --no-fuzzy-matching
	@echo "messages: translate the empty msgstr of $(LOCALE)/en/LC_MESSAGES/messages.po (tests/web/test_languages.py)"

# --- Citus (issue 17, docs/architecture.md "On Citus"): not part of `make test` --------------------------------
# The core stories again, on a coordinator and two workers on loopback, plus the Citus-only ones (tests/citus/).
CITUS_T ?= tests/citus tests/api/test_crud.py tests/api/test_bundles.py tests/api/test_one_space_per_ins.py \
	tests/search tests/documents/test_mhd.py tests/documents/test_visibility.py tests/access/test_world_search.py \
	tests/access/test_rights_http.py tests/trace tests/audit tests/registry/test_import.py \
	tests/lifecycle/test_lifecycle.py tests/lifecycle/test_lifecycle_command.py tests/storage/test_identifier_index.py
.PHONY: citus test-citus

citus: install ## Build Citus once into .citus/ from ../shared/citus (or CITUS_SOURCE; or CITUS_PG_CONFIG=a system Citus)
	$(BIN)/python -m tests.citus.cluster build

test-citus: citus ## The core stories on a local Citus cluster (a coordinator and two workers)
	ESPACE_SANTE_TEST_CITUS=1 $(BIN)/python -m pytest $(CITUS_T)

bench: install ## Benchmarks against a real `espace-sante serve` (results in benchmarks/results/)
	$(BIN)/python -m benchmarks.run

clean: ## Remove the venv and the demo data folder
	rm -rf $(VENV) $(VENV)-tools $(DATA_DIR)

# --- Supply chain and secrets (issue 16 #7) -----------------------------------------------------------------------
.PHONY: audit-deps secrets secrets-baseline
SECRETS_EXCLUDE := ^(requirements\.lock|benchmarks/results/.*\.json|src/espace_sante/fhir/data/.*\.json|tests/data/.*|\.secrets\.baseline)$$

audit-deps: install ## Known vulnerabilities in requirements.lock (pip-audit; says NOT AUDITED when offline)
	$(BIN)/python scripts/audit_deps.py requirements.lock

secrets: install ## No secret in the tracked files beyond those of .secrets.baseline (detect-secrets)
	@git ls-files -z | grep -zEv '$(SECRETS_EXCLUDE)' | xargs -0 $(BIN)/detect-secrets-hook --baseline .secrets.baseline \
		&& echo "secrets: aucun nouveau secret / no new secret"

secrets-baseline: install ## Re-scan after checking that what `make secrets` found is a test value, not a secret
	$(BIN)/detect-secrets scan --exclude-files '$(SECRETS_EXCLUDE)' > .secrets.baseline
