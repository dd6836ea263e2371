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

.PHONY: demo test test-fast lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/lmrec demo

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
