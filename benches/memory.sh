#!/usr/bin/env bash
# Where minimax-dl's peak RSS goes: one `run --exit-when-idle` against the
# built-in simulator on loopback, its /proc/PID/smaps sampled every 50 ms
# and the largest kept, then summed by mapping (the binary's own pages,
# anonymous memory, thread stacks, shared libraries). With --heaptrack the
# same run is repeated under heaptrack and its peak heap consumers printed.
#
#   benches/memory.sh                                   # 2,000 x 1 MiB, concurrency 16 (case 2's shape)
#   benches/memory.sh --files 1 --file-size 268435456 --segments 8 --concurrency 1   # a split download
#   benches/memory.sh --heaptrack                       # and the heap's peak consumers
#
# MINIMAX_DL_BIN names the binary (default target/release/minimax-dl).
# Peak RSS here is the sampled VmRSS; /usr/bin/time's figure (the kernel's
# ru_maxrss) is printed beside it.
set -euo pipefail

FILES=2000 FILE_SIZE=1048576 CONCURRENCY=16 SEGMENTS=1 HEAPTRACK=0
while [ $# -gt 0 ]; do
  case $1 in
    --files) FILES=$2; shift 2 ;;
    --file-size) FILE_SIZE=$2; shift 2 ;;
    --concurrency) CONCURRENCY=$2; shift 2 ;;
    --segments) SEGMENTS=$2; shift 2 ;;
    --heaptrack) HEAPTRACK=1; shift ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "memory.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
BIN=${MINIMAX_DL_BIN:-target/release/minimax-dl}
[ -x "$BIN" ] || { echo "memory.sh: no binary at $BIN: cargo build --release --locked, or set MINIMAX_DL_BIN" >&2; exit 1; }
[ "$HEAPTRACK" = 0 ] || command -v heaptrack > /dev/null \
  || { echo "memory.sh: --heaptrack needs heaptrack (apt-get install heaptrack)" >&2; exit 1; }

W=$(mktemp -d "${TMPDIR:-/tmp}/mdl-memory.XXXXXX")
SIM_PID=
cleanup() { [ -n "$SIM_PID" ] && kill "$SIM_PID" 2> /dev/null; rm -rf "$W"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
API=$(free_port) CDN=$(free_port)
"$BIN" sim --listen "127.0.0.1:$API" --cdn-listen "127.0.0.1:$CDN" --file-size "$FILE_SIZE" > "$W/sim.log" 2>&1 &
SIM_PID=$!
for _ in $(seq 50); do (exec 3<> "/dev/tcp/127.0.0.1/$API") 2> /dev/null && break; sleep 0.1; done

export MINIMAX_API_BASE=http://127.0.0.1:$API MINIMAX_API_KEY=bench \
  MINIMAX_DL_REQUESTS_PER_MINUTE=1000000 MINIMAX_DL_CONFIG=$W/config.toml
: > "$W/config.toml"
seq 1 "$FILES" > "$W/ids"
RUN=(run --exit-when-idle --concurrency "$CONCURRENCY")
[ "$SEGMENTS" -gt 1 ] && RUN+=(--segments "$SEGMENTS")

fresh() { rm -rf "$W/q.db"* "$W/out"; "$BIN" --db "$W/q.db" --out "$W/out" enqueue --from "$W/ids" > /dev/null; }

fresh
/usr/bin/time -f '%M' -o "$W/maxrss" "$BIN" --db "$W/q.db" --out "$W/out" "${RUN[@]}" > "$W/run.log" 2>&1 &
TIME_PID=$!
sleep 0.05
PID=$(pgrep -P "$TIME_PID" | head -1)
best=0
while kill -0 "$PID" 2> /dev/null; do
  rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$PID/status" 2> /dev/null || true)
  if [ -n "$rss" ] && [ "$rss" -gt "$best" ]; then
    best=$rss
    cp "/proc/$PID/smaps" "$W/smaps.peak" 2> /dev/null || true
    ls "/proc/$PID/task" 2> /dev/null | wc -l > "$W/threads.peak" || true
  fi
  sleep 0.05
done
wait "$TIME_PID" || { cat "$W/run.log" >&2; echo "memory.sh: the run failed" >&2; exit 1; }
grep -q "done=$FILES failed=0" "$W/run.log" || { tail -3 "$W/run.log" >&2; echo "memory.sh: not every file was done" >&2; exit 1; }

echo "$FILES x $FILE_SIZE bytes, ${RUN[*]}"
echo "peak RSS: $best KiB sampled, $(cat "$W/maxrss") KiB by the kernel (ru_maxrss); $(cat "$W/threads.peak") threads at the sample"
python3 - "$W/smaps.peak" "$(basename "$BIN")" << 'PY'
import re, sys, collections
binary = sys.argv[2]
kinds = collections.Counter()
current = None
for line in open(sys.argv[1]):
    m = re.match(r'^[0-9a-f]+-[0-9a-f]+ (\S+) \S+ \S+ \S+\s*(.*)$', line)
    if m:
        perms, name = m.group(1), m.group(2)
        if name.endswith('/' + binary) or name == binary:
            current = 'the binary: code (r-x)' if 'x' in perms else 'the binary: data'
        elif name.startswith('/') and '.so' in name:
            current = 'shared libraries'
        elif name == '':
            current = 'anonymous (heap arenas, thread stacks)'
        elif name == '[heap]':
            current = 'main heap ([heap])'
        else:
            current = 'other (' + name.split('/')[-1] + ')'
        continue
    if line.startswith('Rss:'):
        kinds[current] += int(line.split()[1])
for kind, kib in kinds.most_common():
    if kib:
        print(f'  {kib / 1024:6.1f} MiB  {kind}')
PY

if [ "$HEAPTRACK" = 1 ]; then
  fresh
  heaptrack -o "$W/heap" "$BIN" --db "$W/q.db" --out "$W/out" "${RUN[@]}" > /dev/null 2>&1
  heaptrack_print -f "$W/heap.zst" --print-peaks 1 --print-allocators 0 --print-temporary 0 \
    --print-leaks 0 --peak-limit 8 2> /dev/null \
    | grep -E 'peak heap|^[0-9.]+[KMG]? peak memory' -A1 | grep -v '^--' \
    | sed 's/::h[0-9a-f]\{16\}//g' | cut -c1-160
fi
