# Two entry points that work on a fresh machine with only Python: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Use the staged research datasets beside the project when they exist (this workplace and its CI);
# elsewhere lmrec reads ~/.cache/lmrec/datasets and `lmrec demo` downloads MovieLens-100K.
ifneq ($(wildcard ../shared/data),)
export LMREC_DATA ?= $(abspath ../shared/data)
endif

.PHONY: demo serve test test-fast lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/lmrec demo

# The web page on 127.0.0.1:8000 with a small MovieLens-100K bundle (Ctrl-C stops it).
serve: $(STAMP)
	$(BIN)/lmrec demo --serve

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python bench/data_load.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
