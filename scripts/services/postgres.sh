#!/usr/bin/env bash
# Start a throwaway PostgreSQL cluster for launchplane's tests, without systemd:
# initdb under /tmp (as user postgres: initdb refuses root), postgres on
# 127.0.0.1:$LAUNCHPLANE_PG_PORT with trust auth, database launchplane_test.
# Idempotent: if it already answers, only (re)checks the database.
# Logs go to stderr; the last line on stdout is the SQLAlchemy asyncpg URL.
#
# Env overrides: LAUNCHPLANE_PG_PORT (54329), LAUNCHPLANE_PG_DIR (/tmp/launchplane-pg).
set -euo pipefail

PORT=${LAUNCHPLANE_PG_PORT:-54329}
DIR=${LAUNCHPLANE_PG_DIR:-/tmp/launchplane-pg}   # holds data/, the socket and the log
DB=launchplane_test
export DEBIAN_FRONTEND=noninteractive

T0=$(date +%s.%N)
log() { echo "[postgres.sh] $*" >&2; }
die() { echo "[postgres.sh] ERROR: $*" >&2; exit 1; }
as_pg() { runuser -u postgres -- "$@"; }

# 1. Package (provides the postgres user and /usr/lib/postgresql/<ver>/bin).
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  log "installing postgresql"
  apt-get update -qq || die "apt-get update failed"
  apt-get install -y -qq postgresql >/tmp/launchplane-apt-postgres.log 2>&1 \
    || { tail -20 /tmp/launchplane-apt-postgres.log >&2; die "apt-get install postgresql failed"; }
fi
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
ready() { "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT"; }

# 2. Cluster: initdb once, then start unless something already answers.
if ! ready; then
  mkdir -p "$DIR" && chown postgres:postgres "$DIR"
  # A pid file left by a killed server blocks a new one if its pid was reused.
  pid=$(head -1 "$DIR/data/postmaster.pid" 2>/dev/null || true)
  [ -n "$pid" ] && [ "$(ps -o comm= -p "$pid" || true)" != postgres ] && rm -f "$DIR/data/postmaster.pid"
  if [ ! -s "$DIR/data/PG_VERSION" ]; then
    log "initdb $DIR/data"
    as_pg "$BIN/initdb" -D "$DIR/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
      --no-sync >"$DIR/initdb.log" 2>&1 || { tail -20 "$DIR/initdb.log" >&2; die "initdb failed"; }
  fi
  log "starting postgres on 127.0.0.1:$PORT, socket dir $DIR, log $DIR/postgres.log"
  # Durability off: a test cluster trades crash safety for speed.
  # pg_ctl puts the server in its own session, so it outlives this shell.
  as_pg "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/postgres.log" -w -t 60 start -o \
    "-c listen_addresses=127.0.0.1 -p $PORT -k $DIR -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    >/dev/null || { tail -20 "$DIR/postgres.log" >&2; die "postgres did not start (port $PORT taken?)"; }
  for _ in $(seq 40); do ready && break; sleep 0.25; done
  ready || die "pg_isready fails on 127.0.0.1:$PORT"
fi

# 3. Database.
psql=("$BIN/psql" -X -q -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -tA -v ON_ERROR_STOP=1)
if [ "$("${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != 1 ]; then
  log "creating database $DB"
  "${psql[@]}" -c "CREATE DATABASE $DB" || die "CREATE DATABASE $DB failed"
fi

log "ready in $(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')s"
echo "postgresql+asyncpg://postgres@127.0.0.1:$PORT/$DB"
