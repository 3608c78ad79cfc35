# Every target installs what it needs: a fresh machine runs `make demo` or `make test` as is.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export TEST_DATABASE_URL ?= postgresql+asyncpg://postgres@127.0.0.1:5432/test
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: demo test lint typecheck unit bench package clean lock .chromium .asterisk

# The shared kits (a real Asterisk for the PBX tests, Microsoft Graph's metadata) sit beside
# this checkout, or beside the repository it was cloned from (a clone made elsewhere).
ORIGIN := $(shell git config --get remote.origin.url 2>/dev/null)
SHARED ?= $(firstword $(wildcard ../shared $(if $(ORIGIN),$(ORIGIN)/../shared)))
ASTERISK_KIT ?= $(SHARED)/asterisk
export SWITCHBOARD_ASTERISK_KIT ?= $(abspath $(ASTERISK_KIT))
export GRAPH_METADATA_CSDL ?= $(abspath $(SHARED)/graph/v1.0-Prod.csdl)

# Installed from the lock: exact versions, each file checked against its hash. `make lock`
# writes the lock again from pyproject.toml (after changing a dependency there).
$(VENV)/.installed: pyproject.toml requirements.lock
	@$(PYTHON) -m venv $(VENV) || { apt-get update -qq && apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q --require-hashes -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	@touch $@

lock:
	@$(PYTHON) -m venv var/lock-venv && var/lock-venv/bin/pip install -q pip-tools
	var/lock-venv/bin/pip-compile -q --extra dev --generate-hashes --allow-unsafe --strip-extras \
		--no-emit-index-url --no-emit-find-links -o requirements.lock pyproject.toml
	@sed -i 's|^#    pip-compile .*|#    make lock|' requirements.lock

node_modules/.installed: package.json
	npm install --no-audit --no-fund --loglevel=error
	@touch $@

# The emoji font: the cards' status indicators (🟢 🟡 🔴) show in the e2e screenshots.
.chromium:
	@{ command -v chromium && dpkg -s fonts-noto-color-emoji; } >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-color-emoji; }

.asterisk:
	@mkdir -p var
	@test -x "$(ASTERISK_KIT)/build" || { echo "No Asterisk kit found: looked beside this checkout (../shared) and beside $(if $(ORIGIN),$(ORIGIN),its origin). Set SHARED=/path/to/shared."; exit 1; }
	@$(ASTERISK_KIT)/build > var/asterisk-build.log 2>&1 || { tail -n 40 var/asterisk-build.log; echo "The Asterisk build failed: the PBX tests cannot run (see var/asterisk-build.log)."; exit 1; }

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy --strict services cards

unit: $(VENV)/.installed node_modules/.installed .chromium .asterisk
	$(VENV)/bin/pytest -q

test: lint typecheck unit

demo: $(VENV)/.installed node_modules/.installed
	$(PY) -m bot.demo

bench: $(VENV)/.installed .asterisk
	$(PY) -m tests.bench

package: $(VENV)/.installed node_modules/.installed
	$(PY) -m manifest.build

clean:
	rm -rf $(VENV) node_modules var appPackage.zip test-artifacts
