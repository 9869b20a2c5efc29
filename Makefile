# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: install run test lint typecheck check bench clean

# The request path compiled with mypyc (scripts/build_native.py, src/orcarouter/native.py):
# `make install` builds it, and `make run`, `make test` and `make bench` require it.
# `make … ORCAROUTER_NATIVE=0` skips the build and runs from source.
ORCAROUTER_NATIVE ?= require
export ORCAROUTER_NATIVE

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==0.13.9

# `make install PYTHON=/usr/bin/python3.11` (or run, test, bench) builds the venv on that
# interpreter, replacing one built on another; left unset, uv picks one (3.11 or newer).
CHOSEN_PYTHON := $(if $(filter command line environment,$(origin PYTHON)),--python $(PYTHON))

install: $(UV)
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --frozen --quiet $(CHOSEN_PYTHON)
	touch $(VENV)/.installed
	$(PY) scripts/build_native.py

run: install
	$(VENV)/bin/orcarouter migrate
	$(VENV)/bin/orcarouter serve

lint: install
	$(VENV)/bin/ruff check src tests bench scripts
	$(VENV)/bin/ruff format --check src tests bench scripts

typecheck: install
	$(VENV)/bin/mypy

test: install lint typecheck
	$(VENV)/bin/pytest

bench: install
	bash bench/run.sh

clean:
	rm -rf $(VENV) $(TOOLS) build .mypy_cache .ruff_cache .pytest_cache
