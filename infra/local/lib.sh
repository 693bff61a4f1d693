# Shared settings and helpers for the local-server scripts (sourced, not run).
# Every value can be overridden from the environment; the defaults match README.md.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DATA_DIR="${MEMORY_DATA_DIR:-$ROOT/.data}"
RUN_DIR="$DATA_DIR/run"
PG_VERSION=15
PG_CLUSTER=main
PG_CONFIG="/usr/lib/postgresql/$PG_VERSION/bin/pg_config"
LOCAL_DATABASE_URL="postgres://memory:memory@127.0.0.1:5432/memory"
REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
CHROMA_URL="${CHROMA_URL:-http://127.0.0.1:8100}"

log() { printf '[infra] %s\n' "$*" >&2; }
die() { printf '[infra] error: %s\n' "$*" >&2; exit 1; }

# wait_until SECONDS DESCRIPTION COMMAND...: retries COMMAND every 0.25 s until it succeeds.
wait_until() {
  local timeout=$1 what=$2; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "$what did not answer within ${timeout}s"
    sleep 0.25
  done
}

url_host() { local rest=${1#*://}; rest=${rest#*@}; rest=${rest%%/*}; echo "${rest%%:*}"; }
url_port() { local rest=${1#*://}; rest=${rest#*@}; rest=${rest%%/*}; [[ $rest == *:* ]] && echo "${rest##*:}" || echo "$2"; }

as_postgres() { runuser -u postgres -- "$@"; }

redis_ping() { [[ "$(redis-cli -u "$REDIS_URL" ping 2>/dev/null)" == PONG ]]; }
chroma_heartbeat() { curl -fsS "$CHROMA_URL/api/v2/heartbeat"; }
pg_has_vector() {
  psql "$1" -XAtqc "select 1 from pg_available_extensions where name = 'vector'" 2>/dev/null | grep -q 1
}

# Kills the process named in a pid file (only if it is still the one we started) and waits for it.
stop_pidfile() {
  local name=$1 file="$RUN_DIR/$1.pid"
  [[ -f $file ]] || return 0
  local pid; pid=$(cat "$file")
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping $name (pid $pid)"
    kill -TERM "$pid"
    for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -0 "$pid" 2>/dev/null && { log "$name still running, sending KILL"; kill -KILL "$pid"; }
  fi
  rm -f "$file"
}
