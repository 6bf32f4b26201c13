#!/usr/bin/env bash
# Talk to Waypoint in the terminal: starts the action server, then `rasa shell`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
VENV=${WAYPOINT_VENV:-.venv}
"$VENV/bin/python" -m actions.server >"$WAYPOINT_VAR/actions-shell.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
"$VENV/bin/python" scripts/wait_ready.py "http://127.0.0.1:$WAYPOINT_ACTIONS_PORT/health"
"$VENV/bin/python" -m plugins.launch shell --model models/waypoint.tar.gz --endpoints endpoints.yml
