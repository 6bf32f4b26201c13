# Waypoint. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV ?= .venv
PY := $(VENV)/bin/python
RASA := $(VENV)/bin/rasa
ENV := source scripts/env.sh &&

.PHONY: help install install-dev model train run shell test test-unit check validate lock bench bench-serving services clean purge screenshot telegram-webhook telegram-poll messenger-setup

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

install: ## Create .venv with Python 3.10 and install the pinned runtime dependencies (only when the lock changed)
	@scripts/install.sh

install-dev: ## The same plus the test, lint and type tools (requirements-dev.lock)
	@scripts/install.sh --dev

validate: install ## Check the content files and the Rasa training data (no errors, no warnings)
	@$(ENV) $(PY) -m content
	@$(ENV) $(PY) -m plugins.launch data validate --fail-on-warnings --quiet

model: install ## Train the model when data, config or domain changed since the last one (and only then)
	@$(ENV) $(PY) scripts/model.py ensure

train: model

run: model ## Install what is missing, train if needed, start the action server and Rasa (Ctrl-C stops both)
	@scripts/run.sh

shell: model ## Talk to the assistant in the terminal
	@scripts/shell.sh

test: install-dev model ## Install, train if needed, lint, type-check and run every test (what CI runs)
	@scripts/test.sh

test-unit: install-dev ## Only the tests that need no trained model, browser or services (no root, no apt)
	@$(ENV) $(PY) -m pytest -q -m "not model and not browser and not services" tests

check: install-dev ## Lint (ruff), formatting (ruff format --check) and types (mypy)
	@scripts/check.sh

bench: model ## Run the benchmarks and write their reports under bench/
	@$(ENV) $(PY) -m bench.run_all

bench-serving: model ## Only the serving benchmark (latency, throughput, long conversations, scale-out)
	@$(ENV) $(PY) -m bench.serving

services: ## Install and start PostgreSQL and Redis on loopback (for the scale-out configuration and its test)
	@scripts/ensure-services.sh start

screenshot: model ## Screenshot of the web chat at phone width (docs/webchat-phone.png)
	@scripts/ensure-chromium.sh && $(ENV) $(PY) scripts/screenshot.py

telegram-webhook: install ## Point Telegram at this server once: make telegram-webhook URL=https://your.host
	@test -n "$(URL)" || { echo "Usage: make telegram-webhook URL=https://your.public.host"; exit 2; }
	@$(ENV) $(PY) -m channels.telegram set-webhook "$(URL)"

telegram-poll: model ## Run with Telegram over getUpdates (development without a public address)
	@$(ENV) $(PY) -m channels.telegram poll

messenger-setup: install ## Set the Messenger page's Get Started button, greeting and menu once (needs MESSENGER_PAGE_ACCESS_TOKEN)
	@$(ENV) $(PY) -m channels.messenger setup

lock: ## Re-resolve requirements.in into requirements.lock (in a scratch venv)
	@scripts/lock.sh

purge: install ## Delete conversations and hand-off cases older than WAYPOINT_RETENTION_DAYS (default 30)
	@$(ENV) $(PY) -m jobs.retention

clean: ## Remove the trained model and runtime data (var/); keeps .venv
	rm -rf models/*.tar.gz models/*.fingerprint var
