# Set-up and entry points. `make test` and `make bench` create or reuse .venv.
PYTHON ?= python3
VENV ?= .venv
# The torch release the project is tested with; override with `make TORCH_VERSION=...`.
TORCH_VERSION ?= 2.13.0
# The package index torch comes from. Empty: pip's configured index (PyPI by default, whose
# Linux x86-64 wheel is the CUDA build; it runs on the CPU too). For the CPU-only build:
# `make clean && make TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu test`.
TORCH_INDEX_URL ?=
# SCATTER=0 skips the torch-scatter backend (it compiles from source, ~6 minutes the first time).
SCATTER ?= 1
# TRITON=0 does not install the optional Triton kernels (a 290 MB wheel, 1 GB installed);
# without triton their tests report as skipped.
TRITON ?= 1
# RAY=0 does not install the optional `distributed` extra (Ray, a 79 MB wheel, for
# `python -m gnpool.bench run --executor ray`); without it its tests report as skipped.
RAY ?= 1
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-torch-$(TORCH_VERSION)-scatter-$(SCATTER)-triton-$(TRITON)-ray-$(RAY)
comma := ,
EXTRAS := dev,bench$(if $(filter 1,$(TRITON)),$(comma)triton)$(if $(filter 1,$(RAY)),$(comma)distributed)
PYTEST_ARGS ?=
BENCH_ARGS ?=
DOCS_STAMP := $(VENV)/.installed-docs
SPHINX_ARGS ?=

.PHONY: install test bench bench-aggr bench-multiview lint docs clean

install: $(STAMP)

$(STAMP): pyproject.toml setup.py Makefile $(wildcard gnpool/kernels/csrc/*)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install "torch==$(TORCH_VERSION)" \
	  $(if $(TORCH_INDEX_URL),--index-url "$(TORCH_INDEX_URL)")
	$(BIN)/python -m pip install -e ".[$(EXTRAS)]"
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
	$(BIN)/python -m ruff check gnpool tests experiments docs

# The API reference, from the docstrings: the `docs` extra (read from the installed
# metadata, so gnpool's kernels are not rebuilt) and Sphinx with warnings as errors.
$(DOCS_STAMP): $(STAMP)
	$(BIN)/python -c "from importlib.metadata import requires; print('\n'.join(\
	  r.split(';')[0] for r in requires('gnpool') if 'extra == \"docs\"' in r))" \
	  > $(VENV)/docs-requirements.txt
	$(BIN)/python -m pip install -r $(VENV)/docs-requirements.txt
	touch $@

docs: $(DOCS_STAMP)
	$(BIN)/python -m sphinx -W --keep-going -b html $(SPHINX_ARGS) docs docs/_build/html

clean:
	rm -rf $(VENV) build *.egg-info docs/_build
