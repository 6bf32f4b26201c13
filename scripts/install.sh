#!/usr/bin/env bash
# Creates .venv with Python 3.10 and installs the pinned dependency set
# (requirements.lock). Re-runs only when the lock file changed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${WAYPOINT_VENV:-.venv}
stamp="$VENV/.installed"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$(sha256sum requirements.lock | cut -d' ' -f1)" ]; then
  exit 0
fi
if [ ! -x "$VENV/bin/python" ]; then
  python=$(scripts/find-python.sh)
  echo "Creating $VENV with $python"
  "$python" -m venv "$VENV"
fi
echo "Installing the pinned dependencies (requirements.lock); the first time takes about two minutes"
"$VENV/bin/python" -m pip install --quiet --upgrade "pip<25" wheel 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
"$VENV/bin/python" -m pip install --quiet --no-deps -r requirements.lock 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
"$VENV/bin/python" -m pip check
sha256sum requirements.lock | cut -d' ' -f1 > "$stamp"
