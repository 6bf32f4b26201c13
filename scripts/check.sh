#!/usr/bin/env bash
# Lint (ruff check), formatting (ruff format --check) and types (mypy) on the
# project's code. `make check`; `make test` runs it first.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${WAYPOINT_VENV:-.venv}
PATHS=(actions channels components content handoff jobs plugins scripts bench tests)
echo "== ruff check"
"$VENV/bin/ruff" check "${PATHS[@]}"
echo "== ruff format --check"
"$VENV/bin/ruff" format --check "${PATHS[@]}"
echo "== mypy"
"$VENV/bin/mypy"
