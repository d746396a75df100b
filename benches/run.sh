#!/usr/bin/env bash
# The minimax-dl benchmark: minimax-dl against curl and aria2c, fed the same
# files by the same nginx in the same run, plus the queue alone and the idle
# daemon. Everything on 127.0.0.1. See BENCHMARKS.md for what it measures and
# the figures of the last full run.
#
#   benches/run.sh                 full run (every figure in BENCHMARKS.md), ~30 min
#   benches/run.sh --smoke         tiny sizes, one run of each case, for CI (< 2 min after the build)
#
# Options:
#   --reps N          timed repetitions per tool and size (full: 5, smoke: 1)
#   --cases "1 2 3"   run only these cases (1 big file, 2 batch, 3 capped CDN, 4 queue, 5 idle)
#   --results DIR     where the CSV, chart and tables go
#                     (full: benches/results, smoke: a temporary directory, printed)
#   --no-build        use the existing target/release/minimax-dl
#   --batches "2000"  case 2's batch sizes (full: "100 500 2000", smoke: "20 50")
#   --busy-ok         time even when the machine is busy (skip the wait for < 25% of a
#                     core busy before each run); the figures are then only comparable
#                     within the run
#   --profile         where minimax-dl's time goes: by default the 2,000-file batch of
#                     case 2 alone (`--cases`/`--batches` choose others). Each minimax-dl
#                     run is repeated under `perf stat`, `perf record` (DWARF call graphs)
#                     and `strace -f -c`; peers do not run. Reports in
#                     benches/results/profile/: top symbols (self and with callees),
#                     threads, syscalls, and NAME.per-file.txt (CPU, context switches
#                     and syscalls per file).
#   --pg URL          also on PostgreSQL (the server URL names; its role needs CREATEDB):
#                     case 2 runs minimax-dl on SQLite and on PostgreSQL side by side
#                     ("minimax-dl postgres", a fresh database each run, dropped after),
#                     case 4 runs the queue benchmark on both. Prefer the variable below:
#                     an argument shows the password to every user of the machine.
# Environment:
#   MINIMAX_DL_BIN    binary to benchmark (implies --no-build)
#   MINIMAX_DL_BENCH_PG_URL  as --pg URL
#   TMPDIR            work directory parent (must be a real disk, not tmpfs: fsync costs are part of the story)
#   BENCH_KEEP=1      keep the work directory
#   BENCH_CARGO_PROFILE  cargo profile of the queue benchmark (default: bench);
#                     CI's smoke run uses dev, the profile its tests already built
#   BENCH_INJECT_FAULT=corrupt-output|fail-peer
#                     tests of the harness: it must then exit 1
#
# Exit status: 0 when every tool succeeded and every minimax-dl output file
# matched its source's sha256 (performance targets never fail the run);
# 1 when a tool failed or a file was wrong; 2 on a usage or setup error.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PG_URL=${MINIMAX_DL_BENCH_PG_URL:-}
MODE=full
REPS=
CASES="1 2 3 4 5"
RESULTS=
BUILD=1
PROFILE=0
BATCHES_ARG=
BUSY_OK=0

while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) MODE=smoke ;;
    --reps) REPS=$2; shift ;;
    --cases) CASES=$2; shift ;;
    --results) RESULTS=$2; shift ;;
    --no-build) BUILD=0 ;;
    --profile) PROFILE=1 ;;
    --pg) PG_URL=$2; shift ;;
    --batches) BATCHES_ARG=$2; shift ;;
    --busy-ok) BUSY_OK=1 ;;
    -h|--help) sed -n '2,40p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[ "$PROFILE" = 1 ] && PG_URL=   # profiles are of the SQLite runs
# Children (the queue benchmark) get the URL from run.sh explicitly.
unset MINIMAX_DL_BENCH_PG_URL

MiB=$((1024 * 1024))
if [ "$PROFILE" = 1 ]; then
  : "${REPS:=1}"
  [ "$CASES" = "1 2 3 4 5" ] && CASES="2"
  : "${BATCHES_ARG:=2000}"
fi
if [ "$MODE" = smoke ]; then
  : "${REPS:=1}"
  BIG_SIZES="$((64 * MiB)) $((16 * MiB))"   # case 1 (stands for 4 GiB and 256 MiB)
  BATCHES="20 50"                             # case 2 and the chart, 1 MiB files
  CAPPED_SIZE=$((32 * MiB))                   # case 3
  IDLE_SECS=5                                 # case 5
  LATENCY_PROBES=2
else
  : "${REPS:=5}"
  BIG_SIZES="$((4096 * MiB)) $((256 * MiB))"
  BATCHES="100 500 2000"
  CAPPED_SIZE=$((1024 * MiB))
  IDLE_SECS=60
  LATENCY_PROBES=7
fi
[ -n "$BATCHES_ARG" ] && BATCHES=$BATCHES_ARG
BATCH_FILE_SIZE=$MiB
CONCURRENCY=16
SEGMENTS=8
CAP_RATE=8m          # nginx limit_rate for case 3: 8 MiB/s per connection
RPM=1000000          # minimax-dl's API rate cap, set out of the way
SETTLE_SECS=3        # pause before each timed run (see measure)

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'run.sh: %s\n' "$*" >&2; exit "${2:-1}"; }
# free_port, busy_ticks, wait_quiet, timed_run
. "$(dirname "${BASH_SOURCE[0]}")/lib/timing.sh"
has() { [[ " $CASES " == *" $1 "* ]]; }

# --- what the benchmark needs ------------------------------------------------
install_missing() {
  local need=()
  command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
  command -v aria2c >/dev/null 2>&1 || need+=(aria2)
  command -v curl >/dev/null 2>&1 || need+=(curl)
  [ -x /usr/bin/time ] || need+=(time)
  command -v gnuplot >/dev/null 2>&1 || need+=(gnuplot-nox)
  command -v ss >/dev/null 2>&1 || need+=(iproute2)
  command -v sha256sum >/dev/null 2>&1 || need+=(coreutils)
  if [ "$PROFILE" = 1 ]; then
    command -v perf >/dev/null 2>&1 || need+=(linux-perf)
    command -v strace >/dev/null 2>&1 || need+=(strace)
  fi
  if [ ${#need[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "missing ${need[*]}: install them (apt-get install -y ${need[*]}) or run as root" 2
    log "installing ${need[*]}"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
  fi
}
install_missing
PSQL=
if [ -n "$PG_URL" ]; then
  PSQL=$(command -v psql || true)
  for p in /usr/lib/postgresql/*/bin/psql; do [ -n "$PSQL" ] || [ ! -x "$p" ] || PSQL=$p; done
  [ -n "$PSQL" ] || die "--pg needs psql (apt-get install postgresql-client)" 2
fi
# pg_sql SQL: one statement on the server of --pg. Its password goes through
# the environment (PGPASSWORD, percent-decoded), never the command line.
pg_sql() {
  local scheme=${PG_URL%%://*} rest=${PG_URL#*://} userinfo='' password=''
  if [[ ${rest%%/*} == *@* ]]; then
    userinfo=${rest%%@*}
    rest=${rest#*@}
    if [[ $userinfo == *:* ]]; then
      password=$(printf '%b' "${userinfo#*:}" | sed 's/%\([0-9A-Fa-f][0-9A-Fa-f]\)/\\x\1/g')
      password=$(printf '%b' "$password")
      userinfo=${userinfo%%:*}
    fi
    userinfo="$userinfo@"
  fi
  PGPASSWORD=${password:-${PGPASSWORD:-}} "$PSQL" -X -q -At -v ON_ERROR_STOP=1 \
    -d "$scheme://$userinfo$rest" -c "$1"
}

# pg_fresh_db NAME: an empty database NAME on the server of --pg; its URL in PG_DB_URL.
pg_fresh_db() {
  local name=$1 base=${PG_URL%%\?*} query='' authority
  [[ $PG_URL == *\?* ]] && query="?${PG_URL#*\?}"
  authority=${base#*://}
  authority=${authority%%/*}
  pg_sql "DROP DATABASE IF EXISTS $name WITH (FORCE)" || die "cannot drop database $name on the PostgreSQL server"
  pg_sql "CREATE DATABASE $name" || die "cannot create database $name on the PostgreSQL server (does the role have CREATEDB?)"
  PG_DBS+=("$name")
  PG_DB_URL="${base%%://*}://$authority/$name$query"
}

pg_drop_db() { pg_sql "DROP DATABASE IF EXISTS $1 WITH (FORCE)" || die "cannot drop database $1"; }

NGINX=$(command -v nginx || echo /usr/sbin/nginx)
TIME=/usr/bin/time

if [ -n "${MINIMAX_DL_BIN:-}" ]; then
  BIN=$MINIMAX_DL_BIN
  BUILD=0
else
  BIN=$ROOT/target/release/minimax-dl
fi
if [ "$BUILD" = 1 ]; then
  log "cargo build --release"
  (cd "$ROOT" && cargo build --release --locked --bin minimax-dl >&2) || die "build failed" 2
fi
[ -x "$BIN" ] || die "no binary at $BIN (build it or set MINIMAX_DL_BIN)" 2
QUEUE_BENCH=
if has 4; then
  log "cargo bench --bench queue --no-run"
  QUEUE_BENCH=$(cd "$ROOT" && cargo bench --locked --profile "${BENCH_CARGO_PROFILE:-bench}" --bench queue --no-run --message-format=json-render-diagnostics \
    | grep '"kind":\["bench"\]' | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1) \
    || die "build of the queue benchmark failed" 2
  [ -x "$QUEUE_BENCH" ] || die "build of the queue benchmark failed" 2
fi
BENCH_START=$SECONDS

BENCH_START=$SECONDS

# --- work directory, processes, cleanup ----------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/minimax-dl-bench.XXXXXX")
chmod 755 "$TMP"
PIDS=()
PG_DBS=()   # databases made for runs on PostgreSQL, dropped on exit
# Work on copies: a rebuild in the checkout during the run must not swap binaries.
mkdir -p "$TMP/bin"
cp "$BIN" "$TMP/bin/minimax-dl"
BIN=$TMP/bin/minimax-dl
if [ -n "$QUEUE_BENCH" ]; then
  cp "$QUEUE_BENCH" "$TMP/bin/queue-bench"
  QUEUE_BENCH=$TMP/bin/queue-bench
fi
cleanup() {
  local rc=$?
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  for db in "${PG_DBS[@]}"; do
    pg_sql "DROP DATABASE IF EXISTS $db WITH (FORCE)" 2>/dev/null || true
  done
  if [ "${BENCH_KEEP:-0}" = 1 ]; then
    echo "work directory kept: $TMP" >&2
  else
    rm -rf "$TMP"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "$RESULTS" ]; then
  if [ "$MODE" = smoke ]; then RESULTS=$TMP/results
  elif [ "$PROFILE" = 1 ]; then RESULTS=$ROOT/benches/results/profile
  else RESULTS=$ROOT/benches/results; fi
fi
mkdir -p "$RESULTS" "$TMP/src" "$TMP/logs"
: > "$TMP/config.toml"   # an empty config file: no host settings leak in
RUNS=$RESULTS/runs.csv
SUMMARY=$RESULTS/summary.csv
RESULTS_CSV=$RESULTS/results.csv
# machine_cpu_s: busy CPU seconds of the whole machine during the run (the
# tool, nginx, the simulator, and anything else: a check on interference).
echo "case,tool,files,file_bytes,concurrency,rep,wall_s,user_s,sys_s,max_rss_kib,machine_cpu_s" > "$RUNS"
echo "case,tool,mode,metric,files,file_bytes,value,unit,target,verdict" > "$RESULTS_CSV"

fs_type=$(df -PT "$TMP" | awk 'NR == 2 { print $2 }')
[ "$fs_type" != tmpfs ] || log "warning: $TMP is on tmpfs; fsync is free there, so minimax-dl's durability costs do not show"

# --- machine --------------------------------------------------------------------
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "mode: $MODE, repetitions: $REPS"
  echo "cpu: $(nproc) cores, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
  echo "memory: $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
  echo "kernel: $(uname -r)"
  echo "work disk: $fs_type ($(df -P "$TMP" | awk 'NR == 2 { print $1 }'))"
  if [ -n "${MINIMAX_DL_BIN:-}" ]; then
    echo "minimax-dl: $("$BIN" --version) ($MINIMAX_DL_BIN)"
  else
    echo "minimax-dl: $("$BIN" --version) (git $(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo unknown))"
  fi
  echo "curl: $(curl --version | head -1)"
  echo "aria2c: $(aria2c --version | head -1)"
  echo "nginx: $("$NGINX" -v 2>&1 | sed 's/.*: //')"
  echo "gnuplot: $(gnuplot --version)"
  if [ -n "$PG_URL" ]; then
    echo "postgresql: $(pg_sql 'SHOW server_version') (fsync $(pg_sql 'SHOW fsync'), synchronous_commit $(pg_sql 'SHOW synchronous_commit') by default; $(pg_sql "SELECT CASE WHEN inet_server_addr() IS NULL OR host(inet_server_addr()) IN ('127.0.0.1', '::1') THEN 'on this machine' ELSE 'remote' END"))"
  fi
} > "$RESULTS/machine.txt"
cat "$RESULTS/machine.txt" >&2

# --- helpers --------------------------------------------------------------------
# make_file ID BYTES: random content, served as {id}.bin; digest kept in src.sha256.
make_file() {
  local id=$1 bytes=$2 f=$TMP/src/$1.bin
  [ -f "$f" ] && [ "$(stat -c %s "$f")" = "$bytes" ] && return
  head -c "$bytes" /dev/urandom > "$f"
  echo "$(sha256sum < "$f" | cut -d' ' -f1) $id" >> "$TMP/src.sha256"
}

# ids PREFIX N: N file ids PREFIX+1..PREFIX+N, one a line.
ids() { seq -f '%.0f' "$(($1 + 1))" "$(($1 + $2))"; }

# --- nginx: the CDN ---------------------------------------------------------------
NGINX_PORT=$(free_port)
mkdir -p "$TMP/nginx"
cat > "$TMP/nginx/nginx.conf" <<EOF
# Generated by benches/run.sh: a static file server standing in for the CDN.
$( [ "$(id -u)" = 0 ] && echo "user root;" )
worker_processes auto;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 4096; }
http {
    types { application/octet-stream bin; }
    default_type application/octet-stream;
    log_format bench '\$msec \$request_time \$status \$body_bytes_sent "\$request" "\$http_range" "\$http_user_agent"';
    access_log $TMP/nginx/access.log bench;
    client_body_temp_path $TMP/nginx/body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    keepalive_timeout 60s;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        # Unthrottled.
        location /files/ { alias $TMP/src/; }
        # A CDN capping each connection (case 3).
        location /capped/ { alias $TMP/src/; limit_rate $CAP_RATE; }
    }
}
EOF
"$NGINX" -t -q -c "$TMP/nginx/nginx.conf" -p "$TMP/nginx" -g 'daemon off;' 2> "$TMP/nginx/test.log" \
  || { cat "$TMP/nginx/test.log" >&2; die "nginx config rejected" 2; }
"$NGINX" -c "$TMP/nginx/nginx.conf" -p "$TMP/nginx" -g 'daemon off;' 2>> "$TMP/nginx/error.log" &
PIDS+=($!)
CDN=http://127.0.0.1:$NGINX_PORT
echo ok > "$TMP/src/probe.bin"
for _ in $(seq 100); do
  curl -sf "$CDN/files/probe.bin" >/dev/null 2>&1 && break
  sleep 0.05
done
curl -sf "$CDN/files/probe.bin" >/dev/null || { cat "$TMP/nginx/error.log" >&2; die "nginx did not start" 2; }
log "nginx on $CDN (pid ${PIDS[-1]})"

# start_sim NAME CDN_PATH: an API simulator whose download URLs point at nginx.
start_sim() {
  local name=$1 path=$2 api cdn
  api=$(free_port)
  cdn=$(free_port)
  "$BIN" sim --listen "127.0.0.1:$api" --cdn-listen "127.0.0.1:$cdn" \
    --external-cdn "$CDN/$path" > "$TMP/logs/sim-$name.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 200); do
    grep -q '^minimax-dl simulator:' "$TMP/logs/sim-$name.log" 2>/dev/null && break
    sleep 0.05
  done
  grep -q '^minimax-dl simulator:' "$TMP/logs/sim-$name.log" \
    || { cat "$TMP/logs/sim-$name.log" >&2; die "the simulator ($name) did not start" 2; }
  eval "SIM_$name=http://127.0.0.1:$api"
}
start_sim files files
start_sim capped capped
log "simulators: $SIM_files (-> /files), $SIM_capped (-> /capped)"

# measure CASE TOOL FILES FILE_BYTES CONC REP -- COMMAND...: one timed run.
# The jobs' "done" count from `status --json` on stdin (the first "done":
# the tasks' own counts follow it).
jobs_done() {
  grep -o '"done":[0-9]*' | head -1 | cut -d: -f2
}

measure() {
  local case=$1 tool=$2 files=$3 bytes=$4 conc=$5 rep=$6
  shift 7
  local logf=$TMP/logs/$case-${tool//[^A-Za-z0-9_.+-]/_}-$files-$rep.log
  sync
  # Freed memory goes back to the hypervisor a couple of seconds after it is
  # freed (virtio-balloon free page reporting on the machine of BENCHMARKS.md),
  # and writing into such memory again costs a fault in the host: let that
  # settle so that every run starts from the same state.
  [ "$MODE" = smoke ] || sleep "$SETTLE_SECS"
  wait_quiet
  timed_run "$logf" "$tool in case $case" -- "$@"
  local wall=$TIMED_WALL user=$TIMED_USER sys=$TIMED_SYS rss=$TIMED_RSS machine=$TIMED_MACHINE
  echo "$case,$tool,$files,$bytes,$conc,$rep,$wall,$user,$sys,$rss,$machine" >> "$RUNS"
  printf '   %-10s %-26s %5s files  rep %s  %8.2f s  cpu %6.2f s  rss %6.1f MiB\n' \
    "$case" "$tool" "$files" "$rep" "$wall" "$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')" \
    "$(awk -v r="$rss" 'BEGIN { print r / 1024 }')" >&2
}

# verify DIR IDSFILE NAMING sha|size: every id's file in DIR matches its source
# (sha256, or the size). NAMING is "mdl" ({id}-{name}, minimax-dl's archive)
# or "bin" ({id}.bin, the peers).
declare -A SHA=()
verify() {
  local dir=$1 idsf=$2 naming=$3 how=$4 id f n=0 line
  if [ ${#SHA[@]} -eq 0 ] || [ "$(wc -l < "$TMP/src.sha256")" != "${#SHA[@]}" ]; then
    while read -r line; do SHA[${line#* }]=${line%% *}; done < "$TMP/src.sha256"
  fi
  : > "$TMP/check"
  while read -r id; do
    if [ "$naming" = mdl ]; then
      f=$(compgen -G "$dir/$id-*" | head -1 || true)
    else
      f=$dir/$id.bin
    fi
    [ -n "$f" ] && [ -f "$f" ] || die "verification: no output file for $id in $dir"
    if [ "$how" = sha ]; then
      echo "${SHA[$id]}  $f" >> "$TMP/check"
    else
      echo "$f $TMP/src/$id.bin" >> "$TMP/check"
    fi
    n=$((n + 1))
  done < "$idsf"
  [ "$n" -gt 0 ] || die "verification: no ids in $idsf"
  [ "$(find "$dir" -maxdepth 1 -type f | wc -l)" = "$n" ] || die "verification: $dir holds other files than the $n expected"
  if [ "$how" = sha ]; then
    sha256sum --quiet --strict -c "$TMP/check" >&2 || die "verification: sha256 mismatch in $dir (see above)"
  else
    awk '{ print $1; print $2 }' "$TMP/check" | xargs -d '\n' stat -c %s | paste - - \
      | awk '$1 != $2 { bad++ } END { exit bad > 0 }' || die "verification: a file in $dir has the wrong size"
  fi
}

# mdl_env API COMMAND...: minimax-dl's environment, as a command /usr/bin/time can run.
mdl_env() {
  env MINIMAX_API_BASE="$1" MINIMAX_API_KEY=bench MINIMAX_DL_REQUESTS_PER_MINUTE=$RPM MINIMAX_DL_CONFIG="$TMP/config.toml" "${@:2}"
}
mdl_env_cmd() {
  MDL_ENV=(env MINIMAX_API_BASE="$1" MINIMAX_API_KEY=bench MINIMAX_DL_REQUESTS_PER_MINUTE=$RPM MINIMAX_DL_CONFIG="$TMP/config.toml")
}

# run_mdl CASE TOOL IDSFILE CONC SEGMENTS API REP: enqueue (not timed), then time `run`.
# fresh_start IDSFILE: the same state before every timed run, whichever tool
# ran before: no earlier output left (its page cache freed), the sources of
# this run in the page cache (nginx serves them from memory).
fresh_start() {
  rm -rf "$TMP/mdl" "$TMP/peer"
  sed "s|.*|$TMP/src/&.bin|" "$1" | xargs cat > /dev/null
}

# With BACKEND "pg" (default "sqlite"), the queue is a fresh database on the
# server of --pg, named through MINIMAX_DL_DATABASE (exported: no password in
# any argv), dropped after.
run_mdl() {
  local case=$1 tool=$2 idsf=$3 conc=$4 segs=$5 api=$6 rep=$7 backend=${8:-sqlite} n bytes
  local w=$TMP/mdl pg_db=
  fresh_start "$idsf"
  mkdir -p "$w/out"
  n=$(wc -l < "$idsf")
  bytes=$(stat -c %s "$TMP/src/$(head -1 "$idsf").bin")
  local db=(--db "$w/q.db")
  if [ "$backend" = pg ]; then
    pg_db=mdl_bench_${case}_$$_$rep
    pg_fresh_db "$pg_db"
    export MINIMAX_DL_DATABASE=$PG_DB_URL
    db=("$BIN")
  else
    db=("$BIN" "${db[@]}")
  fi
  mdl_env "$api" "${db[@]}" --out "$w/out" enqueue --from "$idsf" > "$w/enqueue.log" 2>&1 \
    || { cat "$w/enqueue.log" >&2; die "minimax-dl enqueue failed"; }
  local seg_args=()
  [ "$segs" -gt 1 ] && seg_args=(--segments "$segs")
  mdl_env_cmd "$api"
  measure "$case" "$tool" "$n" "$bytes" "$conc" "$rep" -- \
    "${MDL_ENV[@]}" "${db[@]}" --out "$w/out" run --exit-when-idle --concurrency "$conc" "${seg_args[@]}"
  local done_count
  done_count=$(mdl_env "$api" "${db[@]}" status --json | jobs_done)
  [ "$done_count" = "$n" ] || die "minimax-dl ($backend) finished $done_count of $n jobs"
  if [ -n "$pg_db" ]; then
    unset MINIMAX_DL_DATABASE
    pg_drop_db "$pg_db"
  fi
  if [ "${BENCH_INJECT_FAULT:-}" = corrupt-output ]; then
    # Test of the harness itself: the verification below must catch this.
    f=$(find "$w/out" -maxdepth 1 -type f | head -1)
    printf 'X' | dd of="$f" bs=1 seek=100 conv=notrunc status=none
  fi
  verify "$w/out" "$idsf" mdl sha
  [ "$PROFILE" = 1 ] && profile_mdl "$case" "$tool" "$idsf" "$api" "${seg_args[@]}" -- \
    run --exit-when-idle --concurrency "$conc" "${seg_args[@]}"
  return 0
}

# profile_mdl CASE TOOL IDSFILE API ... -- RUN_ARGS...: the same run three more
# times, under perf stat, perf record and strace (each from a fresh queue),
# then the figures per file.
profile_mdl() {
  local case=$1 tool=$2 idsf=$3 api=$4 w=$TMP/mdl n mib
  while [ "$1" != -- ]; do shift; done
  shift
  n=$(wc -l < "$idsf")
  mib=$(( $(stat -c %s "$TMP/src/$(head -1 "$idsf").bin") / MiB ))
  local p=$RESULTS name
  name=case$case-${n}x${mib}MiB-${tool//[^A-Za-z0-9]/_}
  mkdir -p "$p"
  mdl_env_cmd "$api"
  for how in stat record strace; do
    fresh_start "$idsf"
    mkdir -p "$w/out"
    mdl_env "$api" "$BIN" --db "$w/q.db" --out "$w/out" enqueue --from "$idsf" > /dev/null 2>&1
    sync
    sleep "$SETTLE_SECS"
    case $how in
      stat) perf stat -o "$p/$name.perf-stat.txt" -e task-clock,context-switches,cpu-migrations,page-faults \
              -- "${MDL_ENV[@]}" "$BIN" --db "$w/q.db" --out "$w/out" "$@" > /dev/null 2>&1 || die "perf stat failed" ;;
      record) profile_record "$p/$name" "${MDL_ENV[@]}" "$BIN" --db "$w/q.db" --out "$w/out" "$@" ;;
      strace) strace -f -c -o "$p/$name.strace.txt" \
                -- "${MDL_ENV[@]}" "$BIN" --db "$w/q.db" --out "$w/out" "$@" > /dev/null 2>&1 || die "strace failed" ;;
    esac
    echo "   profile ($how): $p/$name.*" >&2
  done
  per_file_report "$p/$name" "$n" > "$p/$name.per-file.txt"
}

# profile_record PREFIX COMMAND...: perf record with DWARF call graphs (Rust
# code keeps no frame pointers), reported three ways: symbols by their own
# samples, symbols with their callees' (where our functions spend), threads.
profile_record() {
  local prefix=$1
  shift
  perf record -q --call-graph dwarf,16384 -F 199 -o "$TMP/perf.data" -- "$@" > /dev/null 2>&1 \
    || die "perf record failed"
  perf report -i "$TMP/perf.data" --no-children -g none --sort dso,sym --stdio 2> /dev/null \
    | grep -E '^ +[0-9]' | head -50 > "$prefix.perf-report.txt" || true
  perf report -i "$TMP/perf.data" --children -g none --sort sym --stdio 2> /dev/null \
    | grep -E '^ +[0-9]' | grep -v '\[k\]' | head -80 > "$prefix.perf-children.txt" || true
  perf report -i "$TMP/perf.data" --no-children -g none --sort comm --stdio 2> /dev/null \
    | grep -E '^ +[0-9]' > "$prefix.perf-threads.txt" || true
  rm -f "$TMP/perf.data"
}

# per_file_report PREFIX FILES: perf stat's and strace's counts divided by the
# number of files (the figures to compare with a peer's, file for file).
per_file_report() {
  local prefix=$1 n=$2
  echo "per file, over $n files (from $(basename "$prefix").perf-stat.txt and .strace.txt)"
  awk -v n="$n" '
    /msec task-clock/ { printf "%-22s %10.3f ms\n", "task-clock", $1 / n }
    / context-switches / { gsub(",", "", $1); printf "%-22s %10.1f\n", "context switches", $1 / n }
    / page-faults / { gsub(",", "", $1); printf "%-22s %10.1f\n", "page faults", $1 / n }
    / seconds user/ { printf "%-22s %10.3f ms\n", "user CPU", $1 * 1000 / n }
    / seconds sys/ { printf "%-22s %10.3f ms\n", "sys CPU", $1 * 1000 / n }' "$prefix.perf-stat.txt"
  echo "syscalls per file (strace -f -c; the calls, not their time, are what strace does not distort):"
  awk -v n="$n" '$1 ~ /^[0-9.]+$/ && NF >= 5 {
      calls = $4; name = $NF
      if (calls ~ /^[0-9]+$/) printf "%-22s %10.2f\n", name, calls / n }' "$prefix.strace.txt" \
    | sort -k2 -nr | head -25
}

# run_peer CASE TOOL IDSFILE CONC REP VERIFY -- COMMAND (with @OUT@ for the output dir).
run_peer() {
  local case=$1 tool=$2 idsf=$3 conc=$4 rep=$5 how=$6 n bytes
  shift 7
  local w=$TMP/peer
  fresh_start "$idsf"
  mkdir -p "$w/out"
  n=$(wc -l < "$idsf")
  bytes=$(stat -c %s "$TMP/src/$(head -1 "$idsf").bin")
  [ "$PROFILE" = 1 ] && return 0   # profiles are of minimax-dl alone
  local args=() a
  for a in "$@"; do args+=("${a//@OUT@/$w/out}"); done
  # Test of the harness itself: a failing tool must fail the run.
  [ "${BENCH_INJECT_FAULT:-}" = fail-peer ] && args=(false)
  measure "$case" "$tool" "$n" "$bytes" "$conc" "$rep" -- "${args[@]}"
  verify "$w/out" "$idsf" bin "$how"
}

# Lists the peers read: direct nginx URLs, no API step.
write_lists() {
  local idsf=$1 path=$2 base=${1%.ids} id
  : > "$base.urls"; : > "$base.curl"; : > "$base.pairs"
  while read -r id; do
    echo "$CDN/$path/$id.bin" >> "$base.urls"
    printf 'url = "%s"\noutput = "@OUT@/%s.bin"\n' "$CDN/$path/$id.bin" "$id" >> "$base.curl"
    echo "$id $CDN/$path/$id.bin" >> "$base.pairs"
  done < "$idsf"
}

curl_loop_script() {
  # One curl process per file, in a shell loop: what people write.
  cat > "$TMP/curl-loop.sh" <<'EOF'
#!/usr/bin/env bash
set -euo pipefail
while read -r id url; do
  curl -sS --fail -o "$2/$id.bin" "$url"
done < "$1"
EOF
  chmod +x "$TMP/curl-loop.sh"
}
curl_loop_script

# The verification depth for peers: sha256 on the first repetition, size after.
peer_check() { if [ "$1" = 1 ]; then echo sha; else echo size; fi; }

ARIA=(aria2c -q --console-log-level=error --summary-interval=0 --allow-overwrite=true
      --auto-file-renaming=false --file-allocation=falloc -d @OUT@)

PENDING_SEGMENTS=0
if ! "$BIN" run --help 2>/dev/null | grep -q -- '--segments'; then
  PENDING_SEGMENTS=1
fi

# --- case 1: one big file, unthrottled ----------------------------------------------
if has 1; then
  log "case 1: one big file, unthrottled ($BIG_SIZES bytes)"
  k=0
  for size in $BIG_SIZES; do
    k=$((k + 1))
    id=$((301000000000000 + k))
    make_file "$id" "$size"
    idsf=$TMP/case1-$k.ids
    echo "$id" > "$idsf"
    write_lists "$idsf" files
    url="$CDN/files/$id.bin"
    for rep in $(seq "$REPS"); do
      how=$(peer_check "$rep")
      order=(mdl curl curlsync aria)
      [ $((rep % 2)) = 0 ] && order=(aria curlsync curl mdl)
      for t in "${order[@]}"; do
        case $t in
          mdl) run_mdl 1 minimax-dl "$idsf" 1 1 "$SIM_files" "$rep" ;;
          curl) run_peer 1 curl "$idsf" 1 "$rep" "$how" -- curl -sS --fail -o "@OUT@/$id.bin" "$url" ;;
          curlsync) run_peer 1 "curl+fsync" "$idsf" 1 "$rep" size -- \
                      sh -c 'curl -sS --fail -o "$1" "$2" && sync "$1"' sh "@OUT@/$id.bin" "$url" ;;
          aria) run_peer 1 "aria2c" "$idsf" 1 "$rep" "$how" -- "${ARIA[@]}" -i "${idsf%.ids}.urls" ;;
        esac
      done
    done
    rm -rf "$TMP/mdl" "$TMP/peer"
  done
fi

# --- case 2 and the chart: batches of 1 MiB files, concurrency 16 ----------------------
if has 2; then
  max_batch=0
  for b in $BATCHES; do [ "$b" -gt "$max_batch" ] && max_batch=$b; done
  log "case 2: batches of $BATCHES files x $BATCH_FILE_SIZE bytes, concurrency $CONCURRENCY (generating $max_batch files)"
  ids 302000000000000 "$max_batch" > "$TMP/all2.ids"
  while read -r id; do make_file "$id" "$BATCH_FILE_SIZE"; done < "$TMP/all2.ids"
  for b in $BATCHES; do
    idsf=$TMP/case2-$b.ids
    head -n "$b" "$TMP/all2.ids" > "$idsf"
    write_lists "$idsf" files
    for rep in $(seq "$REPS"); do
      how=$(peer_check "$rep")
      order=(mdl mdlpg aria curlz loop)
      [ $((rep % 2)) = 0 ] && order=(loop curlz aria mdlpg mdl)
      for t in "${order[@]}"; do
        case $t in
          mdl) run_mdl 2 minimax-dl "$idsf" "$CONCURRENCY" 1 "$SIM_files" "$rep" ;;
          mdlpg) [ -n "$PG_URL" ] || continue
                 run_mdl 2 "minimax-dl postgres" "$idsf" "$CONCURRENCY" 1 "$SIM_files" "$rep" pg ;;
          aria) run_peer 2 "aria2c -j$CONCURRENCY" "$idsf" "$CONCURRENCY" "$rep" "$how" -- \
                  "${ARIA[@]}" -j "$CONCURRENCY" -i "${idsf%.ids}.urls" ;;
          curlz) sed "s|@OUT@|$TMP/peer/out|" "${idsf%.ids}.curl" > "${idsf%.ids}.curlrc"
                 run_peer 2 "curl -Z $CONCURRENCY" "$idsf" "$CONCURRENCY" "$rep" "$how" -- \
                   curl -sS --fail -Z --parallel-max "$CONCURRENCY" -K "${idsf%.ids}.curlrc" ;;
          loop) run_peer 2 "curl loop" "$idsf" 1 "$rep" "$how" -- \
                  "$TMP/curl-loop.sh" "${idsf%.ids}.pairs" @OUT@ ;;
        esac
      done
    done
  done
  rm -rf "$TMP/mdl" "$TMP/peer"
fi

# --- case 3: one file from a CDN capping each connection ---------------------------------
if has 3; then
  id=303000000000001
  log "case 3: one $CAPPED_SIZE-byte file, nginx limit_rate $CAP_RATE per connection"
  make_file "$id" "$CAPPED_SIZE"
  idsf=$TMP/case3.ids
  echo "$id" > "$idsf"
  write_lists "$idsf" capped
  segs=$SEGMENTS
  if [ "$PENDING_SEGMENTS" = 1 ]; then
    log "minimax-dl run --help does not list --segments: running with one connection (pending)"
    segs=1
  fi
  mdl_tool="minimax-dl --segments $segs"
  for rep in $(seq "$REPS"); do
    how=$(peer_check "$rep")
    order=(mdl aria)
    [ $((rep % 2)) = 0 ] && order=(aria mdl)
    for t in "${order[@]}"; do
      case $t in
        mdl)
          # Too slow to repeat when the segments do not work: one run is enough to show it.
          if [ "$PENDING_SEGMENTS" = 1 ] && [ "$rep" -gt 1 ]; then continue; fi
          before=$(wc -l < "$TMP/nginx/access.log")
          run_mdl 3 "$mdl_tool" "$idsf" 1 "$segs" "$SIM_capped" "$rep"
          requests=$(tail -n +"$((before + 1))" "$TMP/nginx/access.log" | grep -c "/capped/$id.bin" || true)
          echo "   minimax-dl made $requests request(s) to the CDN for the file" >&2
          echo "$rep $requests" >> "$TMP/case3-requests"
          if [ "$segs" -gt 1 ] && [ "$requests" -le 1 ]; then
            log "--segments $segs made a single request: segmented download not working yet (pending)"
            PENDING_SEGMENTS=1
          fi
          ;;
        aria)
          run_peer 3 "aria2c -x$SEGMENTS -s$SEGMENTS" "$idsf" "$SEGMENTS" "$rep" "$how" -- \
            "${ARIA[@]}" -x "$SEGMENTS" -s "$SEGMENTS" -k 1M -i "${idsf%.ids}.urls" ;;
      esac
    done
  done
  rm -rf "$TMP/mdl" "$TMP/peer"
fi

# --- case 4: the queue alone ----------------------------------------------------------
if has 4; then
  log "case 4: the queue alone (cargo bench --bench queue)"
  smoke_arg=()
  [ "$MODE" = smoke ] && smoke_arg=(--smoke)
  TMPDIR=$TMP "$QUEUE_BENCH" --bench "${smoke_arg[@]}" --csv "$RESULTS_CSV" \
    > "$TMP/logs/queue.log" 2> "$TMP/logs/queue.err" \
    || { tail -30 "$TMP/logs/queue.err" >&2; die "the queue benchmark failed"; }
  grep '^queue ' "$TMP/logs/queue.log" >&2
  if [ -n "$PG_URL" ]; then
    log "case 4 on PostgreSQL (the queue benchmark with MINIMAX_DL_BENCH_PG_URL)"
    MINIMAX_DL_BENCH_PG_URL=$PG_URL "$QUEUE_BENCH" --bench "${smoke_arg[@]}" --csv "$RESULTS_CSV" \
      > "$TMP/logs/queue-pg.log" 2> "$TMP/logs/queue-pg.err" \
      || { tail -30 "$TMP/logs/queue-pg.err" >&2; die "the queue benchmark on PostgreSQL failed"; }
    grep '^queue' "$TMP/logs/queue-pg.log" >&2
  fi
fi

# --- case 5: the idle daemon --------------------------------------------------------------
if has 5; then
  log "case 5: idle daemon for ${IDLE_SECS}s, then $LATENCY_PROBES enqueue-to-start probes"
  w=$TMP/idle
  mkdir -p "$w/out"
  ids 305000000000000 "$LATENCY_PROBES" > "$w/probe.ids"
  while read -r id; do make_file "$id" "$MiB"; done < "$w/probe.ids"
  mdl_env_cmd "$SIM_files"
  # env execs minimax-dl: $! is the daemon itself.
  "${MDL_ENV[@]}" "$BIN" --db "$w/q.db" --out "$w/out" run --concurrency "$CONCURRENCY" > "$w/daemon.log" 2>&1 &
  daemon=$!
  PIDS+=("$daemon")
  sleep 3
  kill -0 "$daemon" 2>/dev/null || { cat "$w/daemon.log" >&2; die "the daemon did not stay up"; }
  ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
  hz=$(getconf CLK_TCK)
  c0=$(ticks "$daemon"); s0=$(date +%s%N)
  sleep "$IDLE_SECS"
  c1=$(ticks "$daemon"); s1=$(date +%s%N)
  idle_pct=$(awk -v c="$((c1 - c0))" -v hz="$hz" -v a="$s0" -v b="$s1" 'BEGIN { printf "%.3f", 100 * c / hz / ((b - a) / 1e9) }')
  idle_rss=$(awk '/VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$daemon/status")
  echo "   idle: $((c1 - c0)) ticks of CPU in $(awk -v a="$s0" -v b="$s1" 'BEGIN { printf "%.1f", (b - a) / 1e9 }') s = ${idle_pct}% of one core; RSS ${idle_rss} MiB" >&2
  : > "$w/latency"
  while read -r id; do
    # Land at a random point of the daemon's poll cycle.
    sleep "$(awk -v r="$RANDOM" 'BEGIN { printf "%.2f", 0.5 + 1.5 * r / 32767 }')"
    t0=$(date +%s%N)
    mdl_env "$SIM_files" "$BIN" --db "$w/q.db" --out "$w/out" enqueue "$id" > /dev/null 2>> "$w/enqueue.err" \
      || die "enqueue of a probe failed"
    t_enq=$(date +%s%N)
    line=
    for _ in $(seq 400); do
      line=$(grep -m1 "/files/$id.bin" "$TMP/nginx/access.log" || true)
      [ -n "$line" ] && break
      sleep 0.025
    done
    [ -n "$line" ] || die "the daemon never fetched probe $id"
    # nginx logs when the request ends: start = $msec - $request_time.
    awk -v t0="$t0" -v te="$t_enq" '{ start = ($1 - $2) * 1000; printf "%.1f %.1f\n", start - t0 / 1e6, (te - t0) / 1e6 }' <<< "$line" >> "$w/latency"
    echo "   probe $id: $(tail -1 "$w/latency" | awk '{ printf "%.0f ms from the start of `enqueue` to the CDN request (enqueue itself %.0f ms)", $1, $2 }')" >&2
  done < "$w/probe.ids"
  # Wait for the probes to finish, then stop the daemon as systemd would.
  for _ in $(seq 200); do
    [ "$(mdl_env "$SIM_files" "$BIN" --db "$w/q.db" status --json | jobs_done)" = "$LATENCY_PROBES" ] && break
    sleep 0.05
  done
  kill -TERM "$daemon"
  wait "$daemon" || die "the daemon exited with an error on SIGTERM (log: $(tail -3 "$w/daemon.log"))"
  verify "$w/out" "$w/probe.ids" mdl sha
  lat_med=$(sort -n "$w/latency" | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
  lat_max=$(sort -n "$w/latency" | awk 'END { print $1 }')
  ok() { if awk -v v="$1" -v t="$2" 'BEGIN { exit !(v < t) }'; then echo met; else echo MISSED; fi; }
  {
    echo "5-idle,minimax-dl,$MODE,idle_cpu_pct_one_core,,,$idle_pct,%,<1,$(ok "$idle_pct" 1)"
    echo "5-idle,minimax-dl,$MODE,idle_rss_mib,,,$idle_rss,MiB,,"
    echo "5-idle,minimax-dl,$MODE,enqueue_to_start_median_ms,1,$MiB,$lat_med,ms,<1000,$(ok "$lat_med" 1000)"
    echo "5-idle,minimax-dl,$MODE,enqueue_to_start_max_ms,1,$MiB,$lat_max,ms,<1000,$(ok "$lat_max" 1000)"
  } >> "$RESULTS_CSV"
fi

# --- summary: CSVs, tables, chart ----------------------------------------------------------
if [ "$PROFILE" = 1 ]; then
  rm -f "$RESULTS_CSV"
  log "profiles in $RESULTS ($((SECONDS - BENCH_START)) s after the build)"
  exit 0
fi
"$ROOT/benches/summarize.sh" "$RESULTS" "$MODE" "$PENDING_SEGMENTS"
[ -f "$TMP/case3-requests" ] && cp "$TMP/case3-requests" "$RESULTS/case3-requests.txt"
cat "$RESULTS/summary.md"
log "results in $RESULTS ($((SECONDS - BENCH_START)) s after the build)"
