# The two commands of the README: `make pipeline` (main job) and `make test` (the test suite).
# Both create .venv (Python 3.10) and install the project when it is missing or stale.
VENV  ?= .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.stllr-installed

.PHONY: pipeline demo test test-all lint format bench venv

$(STAMP): pyproject.toml tools/setup-venv tools/find-python310
	tools/setup-venv $(VENV)

venv: $(STAMP)

## main job: train → quantize → Lava → on-device adaptation → report, on built-in stand-in data
## (options pass through: make pipeline ARGS="--task gesture-standin --threads 2")
pipeline: $(STAMP)
	$(VENV)/bin/stllr pipeline $(ARGS)

## training only: the SHD-shaped network with S-TLLR on the built-in stand-in data
demo: $(STAMP)
	$(VENV)/bin/stllr demo $(ARGS)

## CI's test command: lint, format check, and the fast test suite (slow tests excluded)
test: $(STAMP) lint
	$(PY) -m pytest -m "not slow" -q

## everything, slow tests included
test-all: $(STAMP) lint
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## performance targets (prints JSON; see benchmarks/README.md)
bench: $(STAMP)
	$(PY) benchmarks/run_all.py
