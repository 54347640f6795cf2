# intent-fleet: every set-up step a fresh machine needs lives here.
#
#   make demo    embedded bus + sidecar + the Python example handler, intents flowing
#   make test    lint + the whole test suite (what .ci/run calls)
#   make lint    ruff + mypy --strict + import-linter
#   make bench   benchmarks that print figures
#
# Caches live outside the repo, in $(CACHE) (override with INTENT_FLEET_CACHE):
# the compatibility virtualenvs for the published SDKs are built there once.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CACHE  ?= $(or $(INTENT_FLEET_CACHE),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/intent-fleet)
export INTENT_FLEET_CACHE := $(CACHE)

.PHONY: setup demo test lint unit integration bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: setup
	$(BIN)/intent-fleet demo -- $(BIN)/python examples/handlers/python/handler.py

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest -q -p no:cacheprovider

unit: setup
	$(BIN)/pytest -q tests/unit

integration: setup
	$(BIN)/pytest -q tests/integration

bench: setup
	$(BIN)/python bench/bus.py
	$(BIN)/python bench/sidecar.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info
