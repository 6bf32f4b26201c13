#!/usr/bin/env bash
# Every test: lint and types, content check, Rasa data validation, the
# conversation tests against the trained model, then pytest (unit tests, the
# end-to-end tests that start the servers as `make run` does, the web page in a
# real Chromium, the scale-out tests on real PostgreSQL, Redis and nginx).
# `make test` runs this after installing and training; CI runs `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
VENV=${WAYPOINT_VENV:-.venv}
PY="$VENV/bin/python"
export WAYPOINT_VAR="$(mktemp -d)"   # tests never touch the developer's var/
export WAYPOINT_TRACKER_DB="$WAYPOINT_VAR/tracker.db" WAYPOINT_STATE_DB="$WAYPOINT_VAR/waypoint.db"

scripts/check.sh
echo "== content files"
"$PY" -m content
echo "== rasa data validate (no errors, no warnings)"
"$PY" -m plugins.launch data validate --fail-on-warnings --quiet
echo "== conversation tests (tests/stories, every language)"
"$PY" -m plugins.launch test core --model models/waypoint.tar.gz --stories tests/stories --fail-on-prediction-errors \
  --out "$WAYPOINT_VAR/results" --no-plot >"$WAYPOINT_VAR/rasa-test.log" 2>&1 \
  || { tail -n 60 "$WAYPOINT_VAR/rasa-test.log"; cat "$WAYPOINT_VAR/results/failed_test_stories.yml" 2>/dev/null | head -n 80; exit 1; }
echo "conversation tests passed"
echo "== Chromium for the web chat tests"
scripts/ensure-chromium.sh
echo "== PostgreSQL, Redis and nginx for the scale-out tests"
scripts/ensure-services.sh install \
  || echo "WARNING: PostgreSQL, Redis or nginx could not be installed; the scale-out tests will be skipped (see above)" >&2
echo "== pytest"
"$PY" -m pytest "$@"
