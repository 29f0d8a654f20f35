# One command to set up and run the demo (`make demo`), one to run the tests (`make test`).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint typecheck system-deps bench clean

$(BIN)/dqmon: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,demo,gx]'
	touch $(BIN)/dqmon

setup: $(BIN)/dqmon

demo: setup
	$(BIN)/dqmon demo

# Prometheus (and promtool) come from Debian; tests start their own servers on loopback.
system-deps:
	@command -v prometheus >/dev/null && command -v promtool >/dev/null || \
	  ( (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null )

lint: setup
	$(BIN)/ruff check dqmon tests bench
	$(BIN)/ruff format --check dqmon tests bench

typecheck: setup
	$(BIN)/mypy dqmon

test: setup system-deps lint typecheck
	$(BIN)/pytest -q

bench: setup
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) .dqmon .mypy_cache .ruff_cache .pytest_cache
