#!/usr/bin/env bash
# Three minimax-dl daemons sharing one PostgreSQL queue, on this machine, in
# one command (README, "Many hosts"):
#
#   contrib/try-fleet.sh [FILES]        # default 300 files
#
# Starts a throwaway PostgreSQL cluster on a loopback port (.ci/postgres.sh:
# installs Debian's postgresql package when absent, as root), the MiniMax
# simulator on loopback, enqueues FILES ids, runs three `run` daemons with an
# archive each (as three hosts would), kills one of them with SIGKILL a few
# seconds in, prints `status` until the queue is drained, shows how many
# files each archive holds, and stops everything. Nothing is left behind.
set -euo pipefail
cd "$(dirname "$0")/.."
files=${1:-300}
bin=${MINIMAX_DL_BIN:-target/release/minimax-dl}
[ -x "$bin" ] || cargo build --release --locked
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pg_ci_stop
  rm -rf "$work"
}
# shellcheck source=.ci/postgres.sh disable=SC1091
. .ci/postgres.sh
trap cleanup EXIT
pg_ci_start
export MINIMAX_DL_DATABASE="$MINIMAX_DL_TEST_PG_URL"
export MINIMAX_API_BASE=http://127.0.0.1:8380 MINIMAX_API_KEY=try-fleet-key
export MINIMAX_DL_CONFIG="$work/config.toml" MINIMAX_DL_REQUESTS_PER_MINUTE=600
: > "$work/config.toml"
"$bin" sim --api-key try-fleet-key --file-size 262144 --drop-every 7 > "$work/sim.log" 2>&1 &
pids+=($!)
sleep 1
seq 1 "$files" | "$bin" enqueue --from -
for host in a b c; do
  "$bin" --out "$work/archive-$host" run --concurrency 4 > "$work/run-$host.log" 2>&1 &
  pids+=($!)
done
sleep 4
echo "== SIGKILL the daemon of host b (its jobs go to the others when their 30 s lease runs out)"
kill -KILL "${pids[2]}"
drained() { local s; s=$("$bin" status --json); grep -q '"queued":0[,}]' <<< "$s" && grep -q '"running":0[,}]' <<< "$s"; }
until drained; do
  "$bin" status | head -3 | paste -sd' '
  sleep 2
done
"$bin" status
for host in a b c; do
  echo "archive of host $host: $(find "$work/archive-$host" -maxdepth 1 -type f | wc -l) files"
done
