# Two commands do all set-up on a fresh machine:
#   make run    - virtualenv + install + gateway on 127.0.0.1:8080 with the mock upstream
#   make test   - everything the tests need (OS packages too) + lint, types, unit, end-to-end
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8080
MOCK_PORT ?= 8090
# The documented local default; set your own for anything but a laptop.
GATEWAY_MASTER_KEY ?= sk-gateway-local-dev
export GATEWAY_MASTER_KEY

.PHONY: run test lint types unit os-deps bench install clean

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

run: $(VENV)/.installed
	@echo "gateway: http://127.0.0.1:$(PORT)/v1   master key: $(GATEWAY_MASTER_KEY)"
	$(PY) -m gateway serve --config config/gateway.yaml --port $(PORT) --mock-port $(MOCK_PORT)

os-deps:
	./scripts/install-os-deps.sh

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

types: $(VENV)/.installed
	$(VENV)/bin/mypy

unit: $(VENV)/.installed
	$(VENV)/bin/pytest -q -p no:cacheprovider

test: os-deps $(VENV)/.installed lint types unit

bench: os-deps $(VENV)/.installed
	$(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
