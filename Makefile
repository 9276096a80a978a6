# hoidap: `make` sets everything up and starts the CLI chat; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Reinstall when the dependency list changes.
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: chat setup install models llm index test clean-venv

chat: setup
	$(BIN)/hoidap chat

setup: install models index

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The CPU build of torch first: an unpinned torch would pull gigabytes of CUDA packages.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[test]"
	rm -f $(VENV)/.installed-*
	touch $@

# The chat's default answerer is extractive: it needs the embedding model only. The 1.1 GB local LLM is
# assembled for the tests (they run it) or by `make llm` (for HOIDAP_ANSWERER=local).
models: install
	$(BIN)/hoidap models fetch

llm: install
	$(BIN)/hoidap models fetch --llm

index: install models
	$(BIN)/hoidap index

test: setup llm
	$(BIN)/python -m pytest -q

clean-venv:
	rm -rf $(VENV)
