# tenax: `make demo` and `make test` work on a fresh Debian machine (run as root, or with sudo
# available for the Docker engine install).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
IMAGE ?= tenax-sandbox:default

.PHONY: setup venv bytecode engine image browser test demo bench clean-containers

setup: venv bytecode engine image browser

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip >/dev/null
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

# tenax's compiled modules, written even where PYTHONDONTWRITEBYTECODE is set (as a wheel install
# does): without them every tenax process compiles its ~10k lines again (0.2 s of each start here)
bytecode: venv
	@$(BIN)/python -m compileall -q tenax >/dev/null

engine:
	@bash scripts/ensure-docker.sh

# headless chromium renders the html export in a test (which skips, saying why, without it)
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -q && apt-get install -y -q chromium; } \
	|| echo "chromium is missing and could not be installed: as root, apt-get install -y chromium"

image: venv engine
	$(BIN)/tenax sandbox build --if-missing --tag $(IMAGE)

test: setup
	@set +e; $(BIN)/pytest -q -ra $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; rc=0; fi; exit $$rc

demo: setup
	$(BIN)/tenax demo

bench: setup
	$(BIN)/python bench/cache_economics.py
	$(BIN)/python bench/harness_overhead.py
	$(BIN)/python bench/store_throughput.py
	$(BIN)/python bench/sandbox_exec.py
	$(BIN)/python bench/sandbox_start.py
	$(BIN)/python bench/concurrency.py
	$(BIN)/python bench/daemon_scale.py --pool 4

clean-containers: venv
	$(BIN)/tenax sandbox cleanup
