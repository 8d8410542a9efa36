# Set-up and entry points. `make test` and `make bench` create or reuse .venv.
PYTHON ?= python3
VENV ?= .venv
# The torch release the project is tested with; override with `make TORCH_VERSION=...`.
TORCH_VERSION ?= 2.13.0
# SCATTER=0 skips the torch-scatter backend (it compiles from source, ~6 minutes the first time).
SCATTER ?= 1
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-torch-$(TORCH_VERSION)-scatter-$(SCATTER)
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: install test bench bench-aggr bench-multiview lint clean

install: $(STAMP)

$(STAMP): pyproject.toml setup.py Makefile $(wildcard gnpool/kernels/csrc/*)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install "torch==$(TORCH_VERSION)"
	$(BIN)/python -m pip install -e ".[dev,bench]"
	@if [ "$(SCATTER)" = 1 ]; then \
	  $(BIN)/python -m pip install --no-build-isolation "torch-scatter>=2.1" || \
	  echo "warning: torch-scatter did not build; gnpool uses its native torch backend"; \
	fi
	rm -f $(VENV)/.installed-*
	touch $@

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m gnpool.bench run --profile quick --report $(BENCH_ARGS)

# The multi-view benchmark's quick profile (its report goes to experiments/results/multiview_quick/).
bench-multiview: $(STAMP)
	$(BIN)/python -m gnpool.bench run --profile multiview_quick --report $(BENCH_ARGS)

bench-aggr: $(STAMP)
	$(BIN)/python experiments/bench_aggr.py $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/python -m ruff check gnpool tests experiments

clean:
	rm -rf $(VENV) build *.egg-info
