# raftkv: the two set-up commands are `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint typecheck unit demo sim-long stress-snapshots chaos chaos-families bench bench-memory bench-checker fuzz wan-timing clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests examples
	$(BIN)/ruff format --check src tests examples

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q -n 2 -m "not slow"

test: lint typecheck unit

# A long simulator sweep (thousands of seeds with all faults); not part of `make test`.
sim-long: $(STAMP)
	$(BIN)/raftkv sim --seeds 0..4999 --nodes 5 --faults all

# Snapshots of a large store under load (issue #15 item 5): 3 real nodes, 100 MiB written by 32
# clients while the nodes snapshot; fails on an election, a failed write, or a follower that went
# half an election timeout without hearing from the leader. About 1-2 minutes; prints its figures.
# `make test` runs a 64 MiB slice of it.
stress-snapshots: $(STAMP)
	$(BIN)/pytest -q -p no:xdist -s -m slow tests/e2e/test_snapshot_stall.py

# A long fault campaign on real processes (5 nodes, every fault family: network, processes, and
# power cuts, torn writes, disk and clock faults, which need Debian's fuse3 and faketime, as
# .ci/run installs them); not part of `make test`, which runs a short slice of each family.
chaos: $(STAMP)
	$(BIN)/raftkv chaos --nodes 5 --duration 240 --faults all --seed 1 --out chaos-report

# One long campaign per fault family (5 nodes, CHAOS_FAMILY_S seconds each, about 25 minutes in
# all): the per-family figures in the README's Reliability section. Stops at the first failure.
CHAOS_FAMILY_S ?= 150
chaos-families: $(STAMP)
	for f in partition kill pause delay lossy power torn disk clock; do \
	  $(BIN)/raftkv chaos --nodes 5 --duration $(CHAOS_FAMILY_S) --faults $$f --seed 1 \
	    --out chaos-report/$$f || exit 1; \
	done

# raftkv vs etcd 3.4 (JSON gateway) vs PySyncObj over HTTP, 3 rounds: writes bench/RESULTS.md
# and bench/results.png in about 10 minutes (needs etcd: apt-get install etcd-server etcd-client).
# `bench/compare --quick` is a 1-minute smoke run; `bench/compare --help` for the options.
bench: $(STAMP)
	bench/compare

# RSS per node under a 10-minute write load (log compaction): bench/MEMORY.md, bench/memory.png.
bench-memory: $(STAMP)
	bench/compare --memory

# The linearizability checker on histories with many operations that never returned (a Knossos
# cas-register history, simulated power cuts): bench/CHECKER.md, at most 60 s per history.
bench-checker: $(STAMP)
	$(BIN)/python bench/checker_bench.py --out bench/CHECKER.md

# Fuzz a live node (HTTP requests and peer frames) with many more examples than `make test`.
fuzz: $(STAMP)
	RAFTKV_FUZZ_EXAMPLES=$${RAFTKV_FUZZ_EXAMPLES:-1000} $(BIN)/pytest -q --timeout 3600 \
		tests/security/test_fuzz.py

# Raft timing at WAN round trips (50-800 ms) on three hosts in network namespaces: elections,
# latency and failover per RTT, as in docs/deploy.md. Root only; about 3 minutes per RTT.
wan-timing: $(STAMP)
	cd tests && ../$(BIN)/python -m e2e.wan_timing --rtt 50,100,200,400,800 --out ../wan-timing.json

demo: $(STAMP)
	$(BIN)/raftkv demo

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .mypy_cache .pytest_cache .ruff_cache
