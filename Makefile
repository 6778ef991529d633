# Two commands on a fresh machine: `make demo` and `make test` (both run `make setup` first).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test lint demo train bench-encoder bench-recbole clean

setup: $(STAMP)

# torch first, from the pinned CPU wheel: an unpinned torch pulls several GB of CUDA wheels.
$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev]" torch==2.13.0
	touch $(STAMP)

test: setup
	$(BIN)/ruff check .
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check .

# Until the streaming pipeline lands, the demo trains and evaluates on ml-100k end to end.
demo: setup
	$(BIN)/iu data fetch ml-100k
	$(BIN)/iu train --dataset ml-100k --epochs 30
	$(BIN)/iu eval --model var/models/ml-100k --dataset ml-100k

bench-encoder: setup
	$(BIN)/python -m ops.bench.encoder

bench-recbole: setup
	$(BIN)/python -m ops.bench.recbole_peer --model var/models/ml-100k

clean:
	rm -rf $(VENV) var *.egg-info
