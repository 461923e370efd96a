# `make bench`: set up (first time) and run the main job, noise_sweep, quick profile.
# `make test`:  set up (first time) and run the checks, the documentation build and the tests.
# `make docs`:  build the documentation site into site/ (open site/index.html).
# The virtualenv is created on first use; it is rebuilt when pyproject.toml changes.

PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
PROFILE ?= quick

# A local copy of the datasets beside the checkout is used when SNNBENCH_DATA is unset.
ifeq ($(SNNBENCH_DATA),)
ifneq ($(wildcard ../shared/data/mnist),)
export SNNBENCH_DATA := $(abspath ../shared/data)
endif
endif
export MLFLOW_TRACKING_URI ?= sqlite:///mlflow.db

.PHONY: setup bench test docs ui clean-runs

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	$(BIN)/python -m pip install --quiet --no-deps neurobench==2.3.0
	touch $@

# VERBOSE=1: MLflow's INFO lines and the libraries' start-up messages (as `snnbench COMMAND --verbose`)
bench: setup
	PATH="$(BIN):$$PATH" MLFLOW_LOGGING_LEVEL=$(if $(VERBOSE),INFO,WARNING) SNNBENCH_VERBOSE=$(VERBOSE) \
		mlflow run . -e noise_sweep --env-manager local --experiment-name noise_sweep -P profile=$(PROFILE)

# lint (ruff), the layer contracts (import-linter, pyproject.toml), the documentation site, then the tests
# (pytest-xdist: in worker processes, one per core and at most 4, an idle one taking tests queued
# for a busy one; PYTEST_PARALLEL= runs them in one process)
PYTEST_PARALLEL ?= --numprocesses auto --maxprocesses 4 --dist worksteal
test: setup
	$(BIN)/ruff check src tests
	$(BIN)/lint-imports
	$(MKDOCS_BUILD)
	$(BIN)/python -m pytest $(PYTEST_PARALLEL) $(PYTEST_ARGS)

# --strict: a broken link, a missing page or a docstring the API reference cannot read is an error
# (never --quiet: it hides the warnings that --strict counts; NO_MKDOCS_2_WARNING: Material for MkDocs'
# notice about its successor, printed on every build)
MKDOCS_BUILD = NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site
docs: setup
	$(MKDOCS_BUILD)
	@echo "documentation built: open site/index.html"

ui: setup
	$(BIN)/mlflow ui --backend-store-uri $(MLFLOW_TRACKING_URI)

clean-runs:
	rm -rf mlflow.db mlruns mlartifacts optuna.db
