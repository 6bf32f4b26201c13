#!/usr/bin/env bash
# Real PostgreSQL 15 and Redis on loopback, for the scale-out test and
# benchmarks (tests/test_scaleout.py, bench/serving.py) and for trying
# deploy/endpoints.scale.yml without Docker.
#
#   scripts/ensure-services.sh start [PG_PORT] [REDIS_PORT]
#       Installs what is missing (apt-get), starts a fresh PostgreSQL cluster
#       and a Redis server in a new folder under /tmp, both bound to 127.0.0.1
#       with new random passwords, waits until both answer, and prints
#       shell-style lines (WAYPOINT_PG_*, WAYPOINT_REDIS_*,
#       WAYPOINT_SERVICES_DIR) that deploy/endpoints.scale.yml reads.
#       Ports default to free ones.
#   scripts/ensure-services.sh stop DIR
#       Stops the two servers started in DIR (WAYPOINT_SERVICES_DIR) and
#       deletes DIR with their data.
#   scripts/ensure-services.sh install
#       Installs PostgreSQL 15, Redis and nginx (apt-get) where missing, and
#       starts nothing: what `make test` runs before the tests that need them.
#   scripts/ensure-services.sh install-balancer
#       Installs nginx (apt-get) if missing, without starting it: the scale-out
#       test runs deploy/nginx.conf on loopback itself.
#
# PostgreSQL refuses to run as root, so the cluster belongs to the `postgres`
# system user (runuser -u postgres --). Nothing here touches a system-wide
# PostgreSQL or Redis, and nothing listens beyond loopback.
set -euo pipefail

log() { echo "ensure-services: $*" >&2; }

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

apt_install() {
  # One `apt-get update` per call, only when something is missing. Services
  # are not started by the packages (RUNLEVEL=1 / policy-rc.d).
  log "installing $* (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=300 update -qq >&2
  RUNLEVEL=1 apt-get -o DPkg::Lock::Timeout=300 install -y -qq "$@" >&2
}

pg_bin() {
  if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
    dirname "$(command -v pg_ctl)"
    return
  fi
  local dir
  for dir in /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin; do
    [ -x "$dir/pg_ctl" ] && { echo "$dir"; return; }
  done
  apt_install postgresql-15 >&2
  echo /usr/lib/postgresql/15/bin
}

ensure_installed() {
  PG_BIN=$(pg_bin)
  [ -x "$PG_BIN/initdb" ] || { log "PostgreSQL binaries not found"; exit 1; }
  id postgres >/dev/null 2>&1 || { log "no 'postgres' system user (install postgresql-15)"; exit 1; }
  command -v redis-server >/dev/null || apt_install redis-server
  command -v redis-server >/dev/null || { log "redis-server not found after installing"; exit 1; }
}

start() {
  local pg_port=${1:-$(free_port)} redis_port=${2:-$(free_port)}
  ensure_installed
  local dir pg_password redis_password
  dir=$(mktemp -d /tmp/waypoint-services.XXXXXX)
  chmod 755 "$dir"                       # the postgres user must reach its data folder
  pg_password=$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')
  redis_password=$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')

  # PostgreSQL: a new cluster owned by `postgres`, password login only.
  install -d -o postgres -g postgres -m 700 "$dir/pg" "$dir/pg-socket"
  printf '%s\n' "$pg_password" > "$dir/pg-password"
  chown postgres "$dir/pg-password"; chmod 600 "$dir/pg-password"
  runuser -u postgres -- "$PG_BIN/initdb" -D "$dir/pg/data" -U waypoint --pwfile="$dir/pg-password" \
    --auth=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$dir/pg-initdb.log" 2>&1 \
    || { cat "$dir/pg-initdb.log" >&2; exit 1; }
  rm -f "$dir/pg-password"
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$dir/pg/data" -l "$dir/pg/postgres.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $dir/pg-socket -c max_connections=200 -c fsync=on" start >&2 \
    || { tail -n 30 "$dir/pg/postgres.log" >&2 || true; exit 1; }
  PGPASSWORD=$pg_password psql -h 127.0.0.1 -p "$pg_port" -U waypoint -d postgres -qAt \
    -c "CREATE DATABASE waypoint" >&2

  # Redis: no persistence (locks only), password required.
  cat > "$dir/redis.conf" <<CONF
bind 127.0.0.1
port $redis_port
protected-mode yes
requirepass $redis_password
daemonize yes
pidfile $dir/redis.pid
logfile $dir/redis.log
dir $dir
save ""
appendonly no
CONF
  chmod 600 "$dir/redis.conf"
  redis-server "$dir/redis.conf"
  local tries=0
  until REDISCLI_AUTH=$redis_password redis-cli -h 127.0.0.1 -p "$redis_port" ping 2>/dev/null | grep -q PONG; do
    tries=$((tries + 1)); [ $tries -lt 100 ] || { log "Redis did not start"; cat "$dir/redis.log" >&2; exit 1; }
    sleep 0.1
  done

  cat <<ENV | tee "$dir/env"
WAYPOINT_SERVICES_DIR=$dir
WAYPOINT_PG_HOST=127.0.0.1
WAYPOINT_PG_PORT=$pg_port
WAYPOINT_PG_USER=waypoint
WAYPOINT_PG_PASSWORD=$pg_password
WAYPOINT_PG_DB=waypoint
WAYPOINT_REDIS_HOST=127.0.0.1
WAYPOINT_REDIS_PORT=$redis_port
WAYPOINT_REDIS_PASSWORD=$redis_password
ENV
  chmod 600 "$dir/env"
  log "PostgreSQL on 127.0.0.1:$pg_port, Redis on 127.0.0.1:$redis_port (stop: $0 stop $dir)"
}

stop() {
  local dir=${1:?usage: $0 stop DIR}
  case "$dir" in /tmp/waypoint-services.*) ;; *) log "not a services folder: $dir"; exit 2;; esac
  [ -d "$dir" ] || { log "already gone: $dir"; return 0; }
  local PG_BIN
  PG_BIN=$(pg_bin)
  if [ -f "$dir/pg/data/postmaster.pid" ]; then
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$dir/pg/data" -m fast -w -t 60 stop >&2 || true
  fi
  if [ -f "$dir/redis.pid" ]; then
    local pid
    pid=$(cat "$dir/redis.pid")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -rf "$dir"
  log "stopped and removed $dir"
}

case "${1:-}" in
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  install-balancer) command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || apt_install nginx-light ;;
  install) ensure_installed; command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || apt_install nginx-light ;;
  *) sed -n '2,24p' "$0" >&2; exit 2 ;;
esac
