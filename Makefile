# Two commands do all set-up on a fresh machine with Python 3.11: `make run`, `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run test check lint bench bench-pos screenshots browser clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/kopilka db upgrade
	$(BIN)/kopilka demo
	$(BIN)/kopilka serve

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

test: lint browser
	$(BIN)/python -m pytest -q

# Debian's Chromium for the browser tests (scripts/ensure-chromium says what it does).
browser:
	@scripts/ensure-chromium

# Screenshots of the main screens, made by the browser tests, into docs/screenshots/.
screenshots: $(STAMP) browser
	KOPILKA_SCREENSHOTS=1 $(BIN)/python -m pytest -q tests/browser

bench: $(STAMP)
	$(BIN)/python bench/ledger.py

# The POS gateway over HTTP (wrk) beside pgbench, the offline batch and the nightly routine
# (issue 4); `make bench-pos ARGS=--quick` for a smoke run.
bench-pos: $(STAMP)
	$(BIN)/python bench/pos.py $(ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
