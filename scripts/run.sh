#!/usr/bin/env bash
# Starts the action server, the Rasa server and the retention job on 127.0.0.1
# and keeps them running (scripts/supervise.py restarts a process that stops,
# with back-off); prints where to talk to them; Ctrl-C stops everything.
# Used by `make run`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
VENV=${WAYPOINT_VENV:-.venv}
"$VENV/bin/python" -m content || { echo "Fix the content files named above, then run again." >&2; exit 1; }
exec "$VENV/bin/python" scripts/supervise.py
