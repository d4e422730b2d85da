# Entry points for a fresh machine (Python 3.11, no GPU, nothing else installed):
#   make demo        set up .venv and run the main job on the embedded default corpus
#   make test        set up .venv (with test extras), lint, and run the whole test suite (slow tests too)
#   make test-fast   lint and the quick tests only (no end-to-end flows)
#   make lint        ruff check + ruff format --check over the tree
#   make docs        build the documentation site (mkdocs --strict: a broken link, anchor or page fails)
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
# Extra pip arguments, e.g. PIP_ARGS="--extra-index-url https://download.pytorch.org/whl/cpu" for a CPU torch.
PIP_ARGS ?=
# Test files run on two workers (a file stays on one worker, so its module fixtures are made once); the
# suite's end-to-end tests mostly wait on Ray, Prefect and subprocesses, so two fit on two cores.
# PYTEST_WORKERS= runs them in one process.
PYTEST_WORKERS ?= -n 2 --dist loadfile

.PHONY: demo test test-fast lint docs venv clean

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install $(PIP_ARGS) -e '.[test]'
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(BIN)/asymptote run

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

docs: venv
	$(BIN)/python -m mkdocs build --strict --site-dir site

test: lint docs
	$(BIN)/python -m pytest $(PYTEST_WORKERS)

test-fast: lint
	$(BIN)/python -m pytest $(PYTEST_WORKERS) -m "not slow"

clean:
	rm -rf $(VENV) artifacts .pytest_cache site
