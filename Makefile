# Two commands do all set-up on a fresh machine:
#   make run    - the locked runtime dependencies + the gateway on 127.0.0.1:8080 with the mock upstream
#   make test   - the locked runtime + test dependencies, OS packages too, then lint, types, unit, end-to-end
# Both install exactly what uv.lock says and never resolve afresh (`uv sync --locked` refuses a
# lock that disagrees with pyproject.toml). `make upgrade` is the one deliberate re-resolution.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8080
MOCK_PORT ?= 8090
# uv itself comes from PyPI, pinned by version and hash (tools/uv-requirements.txt), into .tools/.
TOOLS := .tools
UV := $(TOOLS)/bin/uv
# Never download a Python build: use the interpreter named by PYTHON (>= 3.11, .python-version).
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
export UV_PYTHON := $(PYTHON)

.PHONY: run test lint types unit os-deps bench install install-runtime lock-check upgrade clean console-vendor profile

$(UV): tools/uv-requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required")'
	rm -rf $(TOOLS)
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q --disable-pip-version-check --no-deps --require-hashes -r tools/uv-requirements.txt

# Runtime dependencies only (what `make run` needs); --inexact keeps test tools a `make test` put there.
$(VENV)/.runtime: pyproject.toml uv.lock $(UV)
	$(UV) sync --locked --inexact --no-default-groups
	touch $@

# Runtime + the test group.
$(VENV)/.installed: pyproject.toml uv.lock $(UV)
	$(UV) sync --locked --group test
	touch $@ $(VENV)/.runtime

install-runtime: $(VENV)/.runtime
install: $(VENV)/.installed

run: $(VENV)/.runtime
	@echo "gateway: http://127.0.0.1:$(PORT)/v1 (console: http://127.0.0.1:$(PORT)/console/)"
	$(PY) -m gateway serve --config config/gateway.yaml --port $(PORT) --mock-port $(MOCK_PORT) --dev

os-deps:
	./scripts/install-os-deps.sh

# CI fails when pyproject.toml and uv.lock disagree.
lock-check: $(UV)
	$(UV) lock --check

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

types: $(VENV)/.installed
	$(VENV)/bin/mypy

# The suite runs on PYTEST_WORKERS processes (pytest-xdist), a test file per process at a time: every
# server a test starts takes its own ports (tests/ports.py deals each process its share).
PYTEST_WORKERS ?= 2
unit: $(VENV)/.installed
	$(VENV)/bin/pytest -q -p no:cacheprovider -n $(PYTEST_WORKERS) --dist loadfile

test: os-deps lock-check $(VENV)/.installed lint types unit

# The one deliberate re-resolution: newest versions into uv.lock, then the whole suite.
upgrade: $(UV)
	$(UV) lock --upgrade
	$(MAKE) test

bench: os-deps $(VENV)/.installed
	$(PY) -m bench $(BENCH_ARGS)

# Flame graphs of the request path under load into docs/performance/ (docs/performance.md); py-spy is
# the lock's `profile` group and needs ptrace rights over the gateway process (root, or ptrace_scope 0).
profile: os-deps $(UV)
	$(UV) sync --locked --group test --group profile
	$(PY) -m bench.profile $(PROFILE_ARGS)

clean:
	rm -rf $(VENV) $(TOOLS) .mypy_cache .ruff_cache .pytest_cache

# The console's vendored charting library (gateway/console/vendor/VENDOR.md): re-fetched from
# package-lock.json with npm (the only target that needs Node), copied into static/vendor/ and
# checked against the sha256 in VENDOR.md (UPDATE=1 copies without the check, for an upgrade).
CONSOLE_VENDOR := gateway/console/vendor
console-vendor:
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	cp $(CONSOLE_VENDOR)/package.json $(CONSOLE_VENDOR)/package-lock.json "$$tmp"/ && \
	(cd "$$tmp" && npm ci --ignore-scripts --no-audit --no-fund) && \
	cp "$$tmp"/node_modules/uplot/dist/uPlot.iife.min.js "$$tmp"/node_modules/uplot/dist/uPlot.min.css gateway/console/static/vendor/ && \
	cp "$$tmp"/node_modules/uplot/LICENSE gateway/console/static/vendor/uPlot.LICENSE
	@if [ -z "$(UPDATE)" ]; then \
	  sed -n 's/^| `\([^`]*\)` | [^|]* | [^|]* | `\([0-9a-f]\{64\}\)` |$$/\2  gateway\/console\/static\/vendor\/\1/p' $(CONSOLE_VENDOR)/VENDOR.md | sha256sum -c -; \
	fi
