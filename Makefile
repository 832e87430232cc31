# sym3d developer commands. `make test` and `make demo` create .venv and install on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install test test-fast demo bench lint clean

$(STAMP): pyproject.toml examples/plugin/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[all,dev]"
	# The example plugin (docs/plugins.md): its tests run with the others (pytest testpaths).
	$(PY) -m pip install --no-deps -e examples/plugin
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

demo: $(STAMP)
	$(VENV)/bin/sym3d demo

lint: $(STAMP)
	$(PY) -m ruff check sym3d sym3d_eg3d sym3d_extras tests examples

clean:
	rm -rf $(VENV) .pytest_cache
