# Set-up, demo and tests. Each target creates or updates the virtual environment it needs.
PYTHON ?= python3
VENV ?= .venv
# torch lives outside the project's dependency ranges on purpose: pick the build for your machine.
TORCH ?= torch==2.14.1 torchvision==0.29.1
PY := $(VENV)/bin/python
STAMP := $(VENV)/.spectraclip-installed

.PHONY: setup demo test test-fast lint bench bench-deps clean-venv browser-deps postgres-deps

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(TORCH)
	$(PY) -m pip install -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/spectraclip demo $(DEMO_ARGS)

# The page test drives the system Chromium (Debian packages; never a downloaded browser). Installs only
# when it is missing; without root/apt it says so and the browser test skips with that reason.
BROWSER_PACKAGES := chromium chromium-driver fonts-noto-color-emoji
browser-deps: $(STAMP)
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -q && apt-get install -y -q $(BROWSER_PACKAGES); \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then \
	  sudo apt-get update -q && sudo apt-get install -y -q $(BROWSER_PACKAGES); \
	else echo "browser-deps: chromium missing and cannot be installed here; the browser test will skip"; fi
	@$(PY) -c "import selenium" 2>/dev/null || $(PY) -m pip install "selenium>=4.20"

# The labels database tests start a real PostgreSQL server (tests/fixtures_postgres.py: initdb + pg_ctl into a
# temporary folder, as the `postgres` user when root). Installs Debian's server only when initdb is missing;
# without root/apt it says so and those tests skip with that reason.
postgres-deps: $(STAMP)
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -q && apt-get install -y -q postgresql; \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then \
	  sudo apt-get update -q && sudo apt-get install -y -q postgresql; \
	else echo "postgres-deps: PostgreSQL server missing and cannot be installed here; its labels tests will skip"; fi
	@$(PY) -c "import psycopg" 2>/dev/null || $(PY) -m pip install "psycopg[binary]>=3.1"

test: $(STAMP) browser-deps postgres-deps
	$(PY) -m pytest -q --timeout=900

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/bench_embed.py

# benchmarks/bench_serve_load.py drives the server with wrk (Debian package) besides its Python client.
bench-deps: $(STAMP)
	@if command -v wrk >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then apt-get install -y -q wrk; \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo apt-get install -y -q wrk; \
	else echo "bench-deps: wrk missing and cannot be installed here; bench_serve_load.py skips its wrk rows"; fi

clean-venv:
	rm -rf $(VENV)
