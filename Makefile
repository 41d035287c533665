# The two commands a newcomer needs:  make serve  and  make test.
# Each installs what it needs (a virtualenv in .venv, the compat npm packages) on first use.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: serve test lint typecheck unit compat bench clean seed chromium redis-server

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

compat/node_modules/.installed-stamp: compat/package.json compat/package-lock.json
	cd compat && npm ci --no-audit --no-fund
	touch $@

# The iTwin.js frontend (core-frontend, frontend-tiles, esbuild) that reads IMODEL tiles: a folder of its own,
# as it is the 5.13 set and compat/ is the backend's 5.7.3 set.
compat/frontend/node_modules/.installed-stamp: compat/frontend/package.json compat/frontend/package-lock.json
	cd compat/frontend && npm ci --no-audit --no-fund
	touch $@

# Debian's Chromium, for the CesiumJS test (tests/test_cesium_itwin.py drives it with playwright-core from
# compat/node_modules; no browser is downloaded). Installed with apt-get when missing: as root, or through sudo.
CHROMIUM ?= chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
chromium:
	@command -v $(CHROMIUM) >/dev/null || { $(SUDO) apt-get update && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; }

# Debian's redis-server: the several-hosts tests start their own (tests/test_shared_state.py,
# tests/test_multi_host.py), so they can also stop it. Installed like chromium when missing.
redis-server:
	@command -v redis-server >/dev/null || { $(SUDO) apt-get update && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server; }

## Run the server with embedded defaults (SQLite + blob folder in ./twinbase-data) on http://127.0.0.1:8080
serve: $(STAMP)
	$(BIN)/twinbase serve

## Run every test: lint, types, and the suite against SQLite and PostgreSQL with the official npm clients
# Both metadata backends, always: TWINBASE_TEST_DB=sqlite left in a shell (the one-backend shortcut of a
# direct pytest run, tests/conftest.py) must never drop PostgreSQL from this run or from CI (.ci/run).
test: $(STAMP) compat/node_modules/.installed-stamp compat/frontend/node_modules/.installed-stamp chromium redis-server
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	TWINBASE_TEST_DB=both $(BIN)/pytest -q -n 2 --dist loadgroup

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format src tests bench

## Regenerate the empty seed iModel (src/twinbase/bim/data/empty.bim.gz) with the pinned iTwin.js backend
seed: compat/node_modules/.installed-stamp
	cd compat && node make-seed.mjs

## Benchmarks that print their figures (load on the iTwins API; 1 GiB up and down; the API fuzzed from its OpenAPI document; changeset replay, tessellation and Mesh Export vs iTwin.js)
bench: $(STAMP) compat/node_modules/.installed-stamp compat/frontend/node_modules/.installed-stamp
	-$(BIN)/python bench/itwins_load.py
	-$(BIN)/python bench/transfer.py
	-$(BIN)/python bench/api_fuzz.py
	-$(BIN)/python bench/replay.py
	-$(BIN)/python bench/tessellate.py
	-$(BIN)/python bench/mesh_export.py
	-$(BIN)/python bench/ifc_export.py
	-$(BIN)/python bench/imodel_export.py
	-$(BIN)/python bench/lists.py

clean:
	rm -rf $(VENV) compat/node_modules compat/frontend/node_modules
