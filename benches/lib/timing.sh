# shellcheck shell=bash
# What the benchmark scripts share: free loopback ports, waiting for a quiet
# machine, and one timed run of a command. Sourced by benches/run.sh and
# benches/bucket.sh, which define `log` and `die` and set MODE (full|smoke)
# and BUSY_OK (1: time on a busy machine without waiting).

# free_port [SPARE_OFFSET]: a loopback port with no socket on it now (any
# socket, not only listeners: a client's ephemeral port blocks a bind just
# as well), and none on port + SPARE_OFFSET either when that is given
# (SeaweedFS puts each server's gRPC port 10000 above it). Ports handed out
# before are never handed out again.
free_port() {
  local spare=${1:-} port filter
  while :; do
    port=$((20000 + RANDOM % 25000))
    filter="sport = :$port"
    [ -n "$spare" ] && filter="$filter or sport = :$((port + spare))"
    if [ -z "$(ss -Hatn "$filter" 2>/dev/null)" ] && ! [[ " ${USED_PORTS:-} " == *" $port "* ]]; then
      USED_PORTS="${USED_PORTS:-} $port${spare:+ $((port + spare))}"
      echo "$port"
      return
    fi
  done
}

# Busy CPU time of the whole machine so far, in ticks (all cores).
busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }

# proc_ticks PID...: CPU time (user + system, ticks) the processes have used
# so far, their reaped children included; 0 for one that is gone.
proc_ticks() {
  local total=0 pid t
  for pid in "$@"; do
    t=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 + $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0)
    total=$((total + ${t:-0}))
  done
  echo "$total"
}

# wait_quiet [TRIES]: waits (TRIES rounds of 5 s, default 24: two minutes)
# until the machine is quiet, since other work running during a timed run
# would be charged to whichever tool is being timed. Not in smoke mode
# (its timings mean nothing) nor with BUSY_OK=1.
wait_quiet() {
  local tries=${1:-24} b0 b1 pct hz
  [ "$MODE" = smoke ] && return
  [ "${BUSY_OK:-0}" = 1 ] && return
  hz=$(getconf CLK_TCK)
  for _ in $(seq "$tries"); do
    b0=$(busy_ticks); sleep 1; b1=$(busy_ticks)
    pct=$(( (b1 - b0) * 100 / hz ))
    [ "$pct" -lt 25 ] && return
    log "the machine is busy (${pct}% of a core used by other processes); waiting"
    sleep 4
  done
  log "warning: the machine stayed busy; timing anyway"
}

# timed_run LOG WHAT -- COMMAND...: runs COMMAND once under GNU time, its
# output to LOG, and sets TIMED_WALL (s), TIMED_USER, TIMED_SYS (CPU s),
# TIMED_RSS (peak, KiB) and TIMED_MACHINE (busy CPU s of the whole machine
# meanwhile). A failed command ends the script with its log's tail, naming
# WHAT.
timed_run() {
  local logf=$1 what=$2
  shift 3
  local t0 t1 rc=0 b0 b1 out
  out=$(mktemp)
  b0=$(busy_ticks)
  t0=$(date +%s%N)
  "${TIME:-/usr/bin/time}" -f '%U %S %M' -o "$out" "$@" > "$logf" 2>&1 || rc=$?
  t1=$(date +%s%N)
  b1=$(busy_ticks)
  if [ "$rc" != 0 ]; then
    echo "---- failed (exit $rc): $*" >&2
    tail -20 "$logf" >&2
    rm -f "$out"
    die "$what failed (log above)"
  fi
  TIMED_WALL=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
  read -r TIMED_USER TIMED_SYS TIMED_RSS < <(tail -1 "$out")
  rm -f "$out"
  TIMED_MACHINE=$(awk -v b="$((b1 - b0))" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", b / hz }')
}
