# The README contract: `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
export OMP_NUM_THREADS ?= 1
export OPENBLAS_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1

.PHONY: demo test lint bench clean

$(VENV)/.core: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.test: $(VENV)/.core
	$(BIN)/python -m pip install --quiet -e ".[test]"
	@# headless Chromium + chromedriver for the report's browser test (skipped without them)
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; \
	  elif command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; \
	  else SUDO=none; fi; \
	  if [ "$$SUDO" = none ] || ! command -v apt-get >/dev/null 2>&1; then \
	    echo "warning: cannot install chromium chromium-driver (need root or sudo, and apt-get);" \
	      "the report browser test will be skipped" >&2; \
	  else \
	    echo "installing chromium and chromium-driver (apt-get) for the report browser test"; \
	    { $$SUDO apt-get update -q && \
	      $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	        --no-install-recommends chromium chromium-driver; } || \
	    echo "warning: installing chromium chromium-driver failed;" \
	      "the report browser test will be skipped" >&2; \
	  fi; \
	fi
	touch $@

demo: $(VENV)/.core
	$(BIN)/unmix demo -o demo_output --force

test: $(VENV)/.test
	$(BIN)/ruff check src tests benchmarks docs
	$(BIN)/ruff format --check src tests benchmarks docs
	$(BIN)/python -m pytest -n 2 -q

lint: $(VENV)/.test
	$(BIN)/ruff check src tests benchmarks docs
	$(BIN)/ruff format --check src tests benchmarks docs

bench: $(VENV)/.test
	$(BIN)/python benchmarks/bench_engine.py

clean:
	rm -rf $(VENV) demo_output .pytest_cache
