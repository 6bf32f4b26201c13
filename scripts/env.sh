# Defaults for every script; each can be overridden from the environment.
# (Sourced, not executed.)
export WAYPOINT_RASA_PORT="${WAYPOINT_RASA_PORT:-5005}"
export WAYPOINT_ACTIONS_PORT="${WAYPOINT_ACTIONS_PORT:-5055}"
export WAYPOINT_VAR="${WAYPOINT_VAR:-var}"
export WAYPOINT_TRACKER_DB="${WAYPOINT_TRACKER_DB:-$WAYPOINT_VAR/tracker.db}"
export WAYPOINT_STATE_DB="${WAYPOINT_STATE_DB:-$WAYPOINT_VAR/waypoint.db}"
export WAYPOINT_RETENTION_DAYS="${WAYPOINT_RETENTION_DAYS:-30}"
export PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
export SQLALCHEMY_SILENCE_UBER_WARNING=1
export LOG_LEVEL="${LOG_LEVEL:-INFO}"
# Rasa phones home for telemetry unless told not to.
export RASA_TELEMETRY_ENABLED=false
mkdir -p "$WAYPOINT_VAR"
# Shared secret between the Rasa server and the action server, new per start
# unless given.
if [ -z "${WAYPOINT_ACTIONS_TOKEN:-}" ]; then
  WAYPOINT_ACTIONS_TOKEN="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  export WAYPOINT_ACTIONS_TOKEN
fi
export PYTHONWARNINGS="${PYTHONWARNINGS:-ignore}"
