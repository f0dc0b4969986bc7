# `make run` starts the gateway on ./gateway.yaml; `make test` runs the whole suite.
# Each sets up its own virtual environment on first use.
PYTHON ?= python3
VENV ?= .venv
SHARED_TIKTOKEN := $(abspath ../shared/tiktoken)

# tiktoken downloads its encodings on first use; use the offline copy beside the repo when there is one.
ifneq ($(wildcard $(SHARED_TIKTOKEN)/*),)
export TIKTOKEN_CACHE_DIR ?= $(SHARED_TIKTOKEN)
endif

.PHONY: run test check lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[test,fast,lint]'
	touch $@

run: $(VENV)/.installed
	$(VENV)/bin/gateway --config gateway.yaml

check: $(VENV)/.installed
	$(VENV)/bin/gateway --check --config gateway.yaml

test: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -q -rs

# ruff (lint and format), mypy (strict, on gateway/), import-linter (layers, no cycles)
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
