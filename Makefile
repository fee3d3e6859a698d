# Two commands on a fresh machine: `make run` (install + start Baton) and `make test` (install + whole suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install deps run test test-fast lint bench clean

# What Baton runs besides Python: git, redis-server, and bubblewrap (+ setpriv) for the agent's sandbox;
# the dashboard's browser tests drive Debian's chromium with chromium-driver (never a downloaded browser).
# As root with apt-get, missing ones are installed; otherwise make says what to install.
deps:
	@missing=""; \
	for pair in git:git redis-server:redis-server bwrap:bubblewrap setpriv:util-linux \
	    /usr/bin/chromium:chromium /usr/bin/chromedriver:chromium-driver; do \
	  command -v "$${pair%%:*}" >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq$$missing; \
	  else \
	    echo "Baton needs:$$missing  (e.g. sudo apt-get install$$missing)"; exit 1; \
	  fi; \
	fi

$(BIN)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Baton needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

install: deps $(BIN)/.installed

run: install
	$(BIN)/baton up

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q

# The fast tier while you work (~30 s): everything but the tests that start real servers or processes.
test-fast: install
	$(BIN)/pytest -q -m "not slow"

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .baton .mypy_cache .ruff_cache .pytest_cache
