#!/usr/bin/env bash
# Starts the action server and the Rasa server on 127.0.0.1, prints where to
# talk to them, and stops both on Ctrl-C. Used by `make run`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
VENV=${WAYPOINT_VENV:-.venv}
"$VENV/bin/python" -m actions.content || { echo "Fix the content files named above, then run again." >&2; exit 1; }

pids=()
cleanup() {
  trap - INT TERM EXIT
  echo; echo "Stopping Waypoint..."
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup INT TERM EXIT

SANIC_HOST=127.0.0.1 "$VENV/bin/python" -m actions.server &
pids+=($!)

# Retention: purge conversations and hand-off cases older than
# WAYPOINT_RETENTION_DAYS, at start and then hourly.
"$VENV/bin/python" -m channels.retention --every "${WAYPOINT_RETENTION_EVERY:-3600}" >>"$WAYPOINT_VAR/retention.log" 2>&1 &
pids+=($!)

args=(run --model models/waypoint.tar.gz --interface 127.0.0.1 --port "$WAYPOINT_RASA_PORT"
      --credentials credentials.yml --endpoints endpoints.yml --log-file "$WAYPOINT_VAR/rasa.log")
if [ -n "${WAYPOINT_API_TOKEN:-}" ]; then
  args+=(--enable-api --auth-token "$WAYPOINT_API_TOKEN")
else
  echo "WAYPOINT_API_TOKEN is not set: Rasa's HTTP API stays off (channels still work)."
fi
"$VENV/bin/rasa" "${args[@]}" &
pids+=($!)

"$VENV/bin/python" scripts/wait_ready.py "http://127.0.0.1:$WAYPOINT_RASA_PORT/" "http://127.0.0.1:$WAYPOINT_ACTIONS_PORT/health" || exit 1
cat <<MSG

Waypoint is running.
  REST:      POST http://127.0.0.1:$WAYPOINT_RASA_PORT/webhooks/rest/webhook  {"sender": "me", "message": "hello"}
  Web chat:  http://127.0.0.1:$WAYPOINT_RASA_PORT/chat
  Telegram:  $( [ -n "${TELEGRAM_BOT_TOKEN:-}" ] && echo "on (webhook /webhooks/telegram/webhook; make telegram-webhook URL=...)" || echo "off (TELEGRAM_BOT_TOKEN not set)")
  Terminal:  make shell
Press Ctrl-C to stop.
MSG
wait -n "${pids[@]}"
