# The two commands of the README:
#   make demo   set everything up (idempotent) and run the main job on the embedded model
#   make test   run the test suite
VENV := .venv
PY := $(VENV)/bin/python
FRAMES ?= 30
DEMO_ARGS ?=

.PHONY: setup demo test lint bench clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(VENV)/bin/dsflash demo --frames $(FRAMES) $(DEMO_ARGS)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: setup
	$(VENV)/bin/dsflash bench $(BENCH_ARGS)

clean:
	rm -rf build install log .pytest_cache
