# Set-up, demo and tests. Each target creates or updates the virtual environment it needs.
PYTHON ?= python3
VENV ?= .venv
# torch lives outside the project's dependency ranges on purpose: pick the build for your machine.
TORCH ?= torch==2.14.1 torchvision==0.29.1
PY := $(VENV)/bin/python
STAMP := $(VENV)/.spectraclip-installed

.PHONY: setup demo test test-fast lint bench clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(TORCH)
	$(PY) -m pip install -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/spectraclip demo $(DEMO_ARGS)

test: $(STAMP)
	$(PY) -m pytest -q --timeout=900

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/bench_embed.py

clean-venv:
	rm -rf $(VENV)
