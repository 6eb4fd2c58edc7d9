# raftkv: the two set-up commands are `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint typecheck unit demo sim-long chaos clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q -n 2 -m "not slow"

test: lint typecheck unit

# A long simulator sweep (thousands of seeds with all faults); not part of `make test`.
sim-long: $(STAMP)
	$(BIN)/raftkv sim --seeds 0..4999 --nodes 5 --faults all

# A long fault campaign on real processes (5 nodes, every fault family); not part of `make test`.
chaos: $(STAMP)
	$(BIN)/raftkv chaos --nodes 5 --duration 240 --faults all --seed 1 --out chaos-report

demo: $(STAMP)
	$(BIN)/raftkv demo

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .mypy_cache .pytest_cache .ruff_cache
