# soundloc: two commands on a fresh machine, `make book` and `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Offline, files come from a local mirror of the official ones (CI: ../shared/data).
SOUNDLOC_MIRROR ?= $(abspath $(wildcard ../shared/data))
export SOUNDLOC_MIRROR
# glibc malloc: serve allocations up to 32 MB from the heap and keep up to 1 GB of freed heap instead of
# mmap/munmap-ing every large tensor buffer: a chapter-01 run had 0.37 M minor page faults instead of 1.0 M, the unit
# tests ran ~7 % faster here (inherited by notebook kernels; other C libraries ignore these variables).
export MALLOC_MMAP_THRESHOLD_ ?= 33554432
export MALLOC_TRIM_THRESHOLD_ ?= 1073741824
export MALLOC_TOP_PAD_ ?= 268435456
PARAMS ?=
BENCH_ARGS ?=
# Parallel pytest workers (pytest-xdist, work stealing); 0 runs everything in one process.
TEST_WORKERS ?= 2
# Chapters `make book` runs at a time, each in its own process with one thread (soundloc.runner --jobs).
BOOK_JOBS ?= 2

.PHONY: book test data lab bench clean-figures help
help:
	@echo "make book   - install, fetch the small real data, run every chapter (SMALL defaults, BOOK_JOBS=2 at a time) -> figures/"
	@echo "make test   - install, run pytest (unit tests + every notebook in SMALL mode; TEST_WORKERS=2 processes)"
	@echo "make lab    - JupyterLab with the py:percent chapters opening as notebooks"
	@echo "make bench  - benchmark scripts (ratios measured in one run) -> figures/bench.md"
	@echo "              (BENCH_ARGS=--skip-book leaves out the long per-chapter book timing)"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python tools/install.py $(BIN)/python -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

data: $(STAMP)
	$(BIN)/python -c "from soundloc.data import fetch_all; fetch_all()"

book: data
	$(BIN)/python -m soundloc.runner --jobs $(BOOK_JOBS) $(PARAMS)

test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal --durations=15 $(PYTEST_ARGS)

lab: $(STAMP)
	bash tools/lab.sh $(BIN) $(LAB_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/run_all.py $(BENCH_ARGS)
