# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: install run test lint typecheck check bench clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==0.13.9

# `make install PYTHON=/usr/bin/python3.11` (or run, test, bench) builds the venv on that
# interpreter, replacing one built on another; left unset, uv picks one (3.11 or newer).
CHOSEN_PYTHON := $(if $(filter command line environment,$(origin PYTHON)),--python $(PYTHON))

install: $(UV)
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --frozen --quiet $(CHOSEN_PYTHON)
	touch $(VENV)/.installed

run: install
	$(VENV)/bin/orcarouter migrate
	$(VENV)/bin/orcarouter serve

lint: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

typecheck: install
	$(VENV)/bin/mypy

test: install lint typecheck
	$(VENV)/bin/pytest

bench: install
	bash bench/run.sh

clean:
	rm -rf $(VENV) $(TOOLS) .mypy_cache .ruff_cache .pytest_cache
