# shellcheck shell=bash
# A throwaway PostgreSQL cluster for the test suites. Sourced by .ci/run
# (bash, root, `set -euo pipefail`, clean Debian 12 checkout):
#
#   . .ci/postgres.sh
#   pg_ci_start                       # installs if absent, initdb, start, role + db
#   trap 'pg_ci_stop; rm -rf "$unit_dir"' EXIT
#     (or, keeping whatever EXIT trap is already set: pg_ci_chain_exit_trap)
#   cargo test ...                    # reads MINIMAX_DL_TEST_PG_URL
#
# After pg_ci_start:
#   MINIMAX_DL_TEST_PG_URL  postgres://USER:PASS@127.0.0.1:PORT/DB (exported)
#   PG_CI_DIR               the cluster's temp dir: data/, server.log, the socket
#   PG_CI_PORT, PG_CI_BIN   port and the server's bin dir (not exported)
# The test role may CREATE DATABASE, so a test can take a database of its own.
# Knobs (environment, all optional):
#   PG_CI_FSYNC=on          keep fsync on (default off: a throwaway cluster whose
#                           contents nobody needs after a crash; benches that
#                           quote figures should set it on)
#   PG_CI_MAX_CONNECTIONS   default 200 (fleet test: 3 daemons + the suites)

pg_ci_log() { echo "pg-ci: $*" >&2; }

# Newest server bin dir of Debian's packaging, or nothing.
pg_ci_find_bin() {
  local d found=""
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && found=$d
  done
  # Glob order is lexical: 9.6 would sort after 15, but Debian 12 only has 15.
  [ -n "$found" ] && echo "$found"
}

pg_ci_install() {
  pg_ci_log "installing PostgreSQL from Debian's packages"
  # No "main" cluster on /var/lib/postgresql and nothing started on port 5432
  # by the package's postinst: we only want the binaries. The drop-in is read
  # by pg_conftool through createcluster.conf's include_dir (postgresql-common
  # >= 231); it is removed again afterwards if we made it.
  local dropin=/etc/postgresql-common/createcluster.d/00-minimax-dl-ci.conf made_dropin=0
  if [ ! -e "$dropin" ]; then
    mkdir -p "${dropin%/*}"
    echo "create_main_cluster = false" > "$dropin"
    made_dropin=1
  fi
  local t0=$SECONDS
  local rc=0
  apt-get update -qq || rc=$?
  if [ $rc -eq 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql \
      >/dev/null || rc=$?
  fi
  if [ $made_dropin -eq 1 ]; then
    rm -f "$dropin"
    rmdir --ignore-fail-on-non-empty "${dropin%/*}" 2>/dev/null || true
  fi
  pg_ci_log "apt-get update + install: $((SECONDS - t0)) s (exit $rc)"
  return $rc
}

# A TCP port on 127.0.0.1 that nothing answers on right now (the server's own
# bind is the real test: pg_ci_start tries another port if it loses a race).
pg_ci_pick_port() {
  local port tries=0
  while [ $tries -lt 50 ]; do
    port=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
    tries=$((tries + 1))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return 0
    fi
  done
  return 1
}

pg_ci_start() {
  local t0=$SECONDS
  PG_CI_PORT=
  PG_CI_BIN=$(pg_ci_find_bin || true)
  if [ -z "$PG_CI_BIN" ]; then
    pg_ci_install
    PG_CI_BIN=$(pg_ci_find_bin || true)
    [ -n "$PG_CI_BIN" ] || { pg_ci_log "no initdb under /usr/lib/postgresql/*/bin after install"; return 1; }
  fi
  id postgres >/dev/null 2>&1 || { pg_ci_log "no 'postgres' user (postgresql-common creates it)"; return 1; }

  PG_CI_DIR=$(mktemp -d /tmp/minimax-dl-pg.XXXXXX)
  chown postgres: "$PG_CI_DIR"
  chmod 0700 "$PG_CI_DIR"
  local data=$PG_CI_DIR/data log=$PG_CI_DIR/server.log
  # initdb refuses to run as root: run it (and the server) as postgres.
  # Local socket: trust (setup only, socket in our 0700 dir); TCP: passwords.
  runuser -u postgres -- "$PG_CI_BIN/initdb" -D "$data" --no-sync -E UTF8 --locale=C.UTF-8 \
    --auth-local=trust --auth-host=scram-sha-256 -U postgres >"$PG_CI_DIR/initdb.log" 2>&1 \
    || { cat "$PG_CI_DIR/initdb.log" >&2; return 1; }

  local fsync=off
  [ "${PG_CI_FSYNC:-off}" = on ] && fsync=on
  local attempt port opts
  for attempt in 1 2 3 4 5; do
    port=$(pg_ci_pick_port) || { pg_ci_log "no free port"; return 1; }
    opts="-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories='$PG_CI_DIR'"
    opts+=" -c max_connections=${PG_CI_MAX_CONNECTIONS:-200} -c fsync=$fsync -c full_page_writes=$fsync"
    if runuser -u postgres -- "$PG_CI_BIN/pg_ctl" start -D "$data" -l "$log" -w -t 60 -o "$opts" \
         >/dev/null 2>&1; then
      PG_CI_PORT=$port
      break
    fi
    pg_ci_log "start on port $port failed (attempt $attempt):"
    tail -n 3 "$log" >&2 || true
  done
  [ -n "${PG_CI_PORT:-}" ] || return 1

  local user=minimax_dl_test db=minimax_dl_test pass
  pass=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')   # hex: safe in a URL and in SQL
  "$PG_CI_BIN/psql" -X -q -h "$PG_CI_DIR" -p "$PG_CI_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 \
    -c "CREATE ROLE $user LOGIN CREATEDB PASSWORD '$pass'" \
    -c "CREATE DATABASE $db OWNER $user" >/dev/null
  export MINIMAX_DL_TEST_PG_URL="postgres://$user:$pass@127.0.0.1:$PG_CI_PORT/$db"
  export PG_CI_DIR
  pg_ci_log "PostgreSQL $("$PG_CI_BIN/postgres" -V | awk '{print $3}') on 127.0.0.1:$PG_CI_PORT, data in $data ($((SECONDS - t0)) s)"
}

# Stops the cluster and removes its directory. Safe to call twice, or before
# pg_ci_start, and never fails (it runs from an EXIT trap).
pg_ci_stop() {
  local dir=${PG_CI_DIR:-}
  [ -n "$dir" ] || return 0
  if [ -f "$dir/data/postmaster.pid" ]; then
    # immediate: nothing in it is worth a checkpoint.
    runuser -u postgres -- "${PG_CI_BIN:-/usr/lib/postgresql/15/bin}/pg_ctl" stop -D "$dir/data" -m immediate -w -t 30 \
      >/dev/null 2>&1 || true
  fi
  rm -rf "$dir" || true
  PG_CI_DIR=
  unset MINIMAX_DL_TEST_PG_URL
  return 0
}

# Runs pg_ci_stop at exit, before whatever EXIT trap is already set (which is
# kept). Call it after pg_ci_start, from the script's top level.
pg_ci_chain_exit_trap() {
  local existing
  existing=$(trap -p EXIT)            # trap -- 'rm -rf "$unit_dir"' EXIT, or empty
  existing=${existing#"trap -- '"}
  existing=${existing%"' EXIT"}
  existing=${existing//"'\\''"/"'"}   # trap -p writes ' as '\''
  # shellcheck disable=SC2064  # expand the old command now, on purpose
  trap "pg_ci_stop; ${existing}" EXIT
}
