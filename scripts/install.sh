#!/usr/bin/env bash
# Creates .venv with Python 3.10 and installs the pinned dependency set:
# requirements.lock (what the servers need), and with --dev also
# requirements-dev.lock (tests, lint, types; never in the deploy image).
# Re-runs only when a lock file changed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${WAYPOINT_VENV:-.venv}
locks=(requirements.lock)
[ "${1:-}" = "--dev" ] && locks+=(requirements-dev.lock)
stamp="$VENV/.installed"
wanted="$(cat "${locks[@]}" | sha256sum | cut -d' ' -f1) ${locks[*]}"
if [ -f "$stamp" ] && { [ "$(cat "$stamp")" = "$wanted" ] || { [ "${#locks[@]}" = 1 ] && grep -q " requirements.lock requirements-dev.lock$" "$stamp" && [ "$(cut -d' ' -f1 "$stamp")" = "$(cat requirements.lock requirements-dev.lock | sha256sum | cut -d' ' -f1)" ]; }; }; then
  exit 0
fi
if [ ! -x "$VENV/bin/python" ]; then
  python=$(scripts/find-python.sh)
  echo "Creating $VENV with $python"
  "$python" -m venv "$VENV"
fi
echo "Installing the pinned dependencies (${locks[*]}); the first time takes about two minutes"
"$VENV/bin/python" -m pip install --quiet --upgrade "pip<25" wheel 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
args=()
for lock in "${locks[@]}"; do args+=(-r "$lock"); done
"$VENV/bin/python" -m pip install --quiet --no-deps "${args[@]}" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
"$VENV/bin/python" -m pip check
echo "$wanted" > "$stamp"
