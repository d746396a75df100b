#!/usr/bin/env bash
# benches/summarize.sh RESULTS_DIR [MODE] [PENDING_SEGMENTS]
#
# Turns runs.csv (one row per timed run, written by run.sh) into
#   summary.csv  one row per case, tool and size: median wall, min-max,
#                throughput, CPU, peak RSS, ratio to the best peer;
#   results.csv  (appended) the figures and the targets with their verdicts;
#   summary.md   the tables of BENCHMARKS.md;
#   chart.svg    wall time vs batch size (case 2), from chart.gp.
# Called by run.sh; rerun it by hand on a results directory to redo the tables
# (it rewrites what it appended, keeping the rows of cases 4 and 5).
set -euo pipefail
R=$1
MODE=${2:-full}
PENDING_SEGMENTS=${3:-0}
RUNS=$R/runs.csv
SUMMARY=$R/summary.csv
RESULTS_CSV=$R/results.csv
HEADER="case,tool,mode,metric,files,file_bytes,value,unit,target,verdict"
[ -f "$RESULTS_CSV" ] || echo "$HEADER" > "$RESULTS_CSV"

# --- summary.csv: group by (case, tool, files, file_bytes) ----------------------------
# A peer is curl or aria2c; "+fsync" rows are a reference (curl made durable), not a peer.
{
  echo "case,tool,files,file_bytes,concurrency,reps,wall_median_s,wall_min_s,wall_max_s,throughput_mib_s,cpu_median_s,max_rss_mib,ratio_vs_best_peer,best_peer"
  tail -n +2 "$RUNS" | sort -t, -k1,1n -k4,4gr -k3,3n -k2,2 -k7,7g | awk -F, -v OFS=, '
    function median(a, n,   i, j, t) {
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
      return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    function flush(   med, lo, hi, i) {
      if (n == 0) return
      lo = w[1]; hi = w[1]
      for (i = 1; i <= n; i++) { if (w[i] < lo) lo = w[i]; if (w[i] > hi) hi = w[i] }
      med = median(w, n)
      rows[++nr] = sprintf("%s,%s,%d,%.0f,%d,%d,%.3f,%.3f,%.3f,%.1f,%.2f,%.1f", kc, kt, kf, kb, kk, n, med, lo, hi,
        kf * kb / 1048576 / med, median(c, n), rss / 1024)
      group[nr] = kc "," kf "," kb; med_of[nr] = med; tool_of[nr] = kt
      if (kt !~ /^minimax-dl/ && kt !~ /\+fsync/ && (!(group[nr] in best) || med < best[group[nr]])) {
        best[group[nr]] = med; best_name[group[nr]] = kt
      }
      n = 0; rss = 0
    }
    {
      key = $1 "," $2 "," $3 "," $4
      if (key != last) { flush(); last = key; kc = $1; kt = $2; kf = $3; kb = $4; kk = $5 }
      n++; w[n] = $7; c[n] = $8 + $9; if ($10 > rss) rss = $10
    }
    END {
      flush()
      for (i = 1; i <= nr; i++) {
        g = group[i]
        if (g in best) print rows[i], sprintf("%.2f", med_of[i] / best[g]), best_name[g]
        else print rows[i], "", ""
      }
    }'
} > "$SUMMARY"

# --- results.csv: figures and targets of cases 1-3 ---------------------------------------
grep -v '^[123]-' "$RESULTS_CSV" > "$R/.keep" || true
{
  cat "$R/.keep"
  awk -F, -v mode="$MODE" -v pending="$PENDING_SEGMENTS" '
    function row(c, tool, metric, f, b, value, unit, target, verdict) {
      printf "%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n", name[c], tool, mode, metric, f, b, value, unit, target, verdict
    }
    function verdict(ok) { return ok ? "met" : "MISSED" }
    BEGIN { name[1] = "1-big-file"; name[2] = "2-batch"; name[3] = "3-capped-cdn" }
    NR > 1 {
      c = $1; t = $2; f = $3; b = $4
      wall[c, t, f, b] = $7; rss[c, t, f, b] = $12
      # "minimax-dl postgres" (run.sh --pg) is judged against minimax-dl on SQLite.
      if (t ~ /^minimax-dl/ && t !~ /postgres/) mdl[c] = t
      if (t ~ /^minimax-dl postgres/) pg[c] = t
      if (c == 1) { if (b > big) big = b; if (small == 0 || b < small) small = b }
      if (c == 2 && f > f2) { f2 = f; b2 = b }
      if (c == 3) { f3 = f; b3 = b }
      row(c, t, "wall_median_s", f, b, $7, "s", "", "")
      row(c, t, "throughput_mib_s", f, b, $10, "MiB/s", "", "")
      row(c, t, "cpu_s", f, b, $11, "s", "", "")
      row(c, t, "peak_rss_mib", f, b, $12, "MiB", "", "")
      if (t ~ /^minimax-dl/ && $13 != "") row(c, t, "wall_ratio_vs_best_peer (" $14 ")", f, b, $13, "x", "", "")
    }
    END {
      m = mdl[1]
      if (m != "" && big > 0) {
        # The throughput ratio is the inverse of the wall ratio (same bytes).
        r = wall[1, "curl", 1, big] / wall[1, m, 1, big]
        row(1, m, "throughput_vs_curl", 1, big, sprintf("%.3f", r), "x", ">=1.0", verdict(r >= 1.0))
        row(1, m, "peak_rss_mib", 1, big, rss[1, m, 1, big], "MiB", "<=32", verdict(rss[1, m, 1, big] <= 32))
        if (small != big) {
          # "The same within 10%" is the memory: it must not grow with the
          # size of the file. The throughput of the small file is shown, not
          # judged (fixed costs, the API call and the final fsync, weigh more).
          r = wall[1, "curl", 1, small] / wall[1, m, 1, small]
          row(1, m, "throughput_vs_curl", 1, small, sprintf("%.3f", r), "x", "", "")
          row(1, m, "peak_rss_mib", 1, small, rss[1, m, 1, small], "MiB", "<=35.2", verdict(rss[1, m, 1, small] <= 35.2))
          q = rss[1, m, 1, big] / rss[1, m, 1, small]
          row(1, m, "peak_rss_big_over_small", 1, big, sprintf("%.3f", q), "x", "<=1.10", verdict(q <= 1.10))
        }
      }
      m = mdl[2]
      if (m != "" && f2 > 0) {
        r = wall[2, m, f2, b2] / wall[2, "aria2c -j16", f2, b2]
        row(2, m, "wall_vs_aria2c_j16", f2, b2, sprintf("%.3f", r), "x", "<=1.0", verdict(r <= 1.0))
        row(2, m, "peak_rss_mib", f2, b2, rss[2, m, f2, b2], "MiB", "<=48", verdict(rss[2, m, f2, b2] <= 48))
        if (pg[2] != "") {
          r = wall[2, pg[2], f2, b2] / wall[2, m, f2, b2]
          row(2, pg[2], "wall_vs_sqlite", f2, b2, sprintf("%.3f", r), "x", "<=1.1", verdict(r <= 1.1))
        }
      }
      m = mdl[3]
      if (m != "" && f3 > 0) {
        r = wall[3, m, f3, b3] / wall[3, "aria2c -x8 -s8", f3, b3]
        v = verdict(r <= 1.0)
        if (pending == 1) v = v " (segments pending)"
        row(3, m, "wall_vs_aria2c_x8_s8", f3, b3, sprintf("%.3f", r), "x", "<=1.0", v)
      }
    }' "$SUMMARY"
} > "$R/.results"
mv "$R/.results" "$RESULTS_CSV"
rm -f "$R/.keep"

# --- summary.md ------------------------------------------------------------------------
size_of() { awk -v b="$1" 'BEGIN { if (b >= 1073741824) printf "%g GiB", b / 1073741824; else if (b >= 1048576) printf "%g MiB", b / 1048576; else if (b >= 1024) printf "%g KiB", b / 1024; else printf "%d B", b }'; }
{
  echo "## Results ($MODE mode)"
  echo
  sed 's/^/    /' "$R/machine.txt"
  echo
  echo "Wall time: median of the repetitions, min–max in brackets. CPU: user+sys seconds"
  echo "(median, the process and its children). Peak RSS: the largest of the repetitions"
  echo "(\`/usr/bin/time %M\`; for the curl loop, the largest single process). Ratio:"
  echo "wall time over the best peer's (curl or aria2c) for the same files; below 1 is faster."
  for c in 1 2 3; do
    grep -q "^$c," "$SUMMARY" || continue
    echo
    case $c in
      1) echo "### Case 1: one big file, unthrottled" ;;
      2) echo "### Case 2: batches of 1 MiB files, concurrency 16" ;;
      3) echo "### Case 3: one file from a CDN capped at 8 MiB/s per connection (nginx \`limit_rate 8m\`)" ;;
    esac
    echo
    echo "| tool | files × size | wall s (min–max) | MiB/s | CPU s | peak RSS MiB | ratio to best peer |"
    echo "|---|---|---|---|---|---|---|"
    while IFS=, read -r cc tool files bytes conc reps med lo hi tput cpu rss ratio bestp; do
      [ "$cc" = "$c" ] || continue
      if [[ $tool == minimax-dl* ]]; then tool="**$tool**"; ratio="**${ratio}×**"; else ratio="${ratio}×"; fi
      printf '| %s | %s × %s | %.2f (%.2f–%.2f) | %.0f | %.2f | %.1f | %s |\n' \
        "$tool" "$files" "$(size_of "$bytes")" "$med" "$lo" "$hi" "$tput" "$cpu" "$rss" "$ratio"
    done < <(tail -n +2 "$SUMMARY")
  done
  if [ "$PENDING_SEGMENTS" = 1 ] && grep -q '^3,' "$SUMMARY"; then
    echo
    echo "Case 3: \`--segments\` is pending (not in \`run --help\`, or it made a single request),"
    echo "so minimax-dl ran once, on one connection."
  fi
  echo
  echo "### Targets"
  echo
  echo "| case | metric | size | value | target | verdict |"
  echo "|---|---|---|---|---|---|"
  while IFS=, read -r cc tool mode metric files bytes value unit target verdict; do
    [ -n "$target" ] || continue
    size=
    [ -n "$files" ] && size="$files"
    [ -n "$bytes" ] && size="$size × $(size_of "$bytes")"
    printf '| %s | %s | %s | %s %s | %s | %s |\n' "$cc" "$metric" "$size" "$value" "$unit" "$target" "$verdict"
  done < <(tail -n +2 "$RESULTS_CSV" | sort -t, -k1,1 -s)
  if grep -q '^[45]-' "$RESULTS_CSV"; then
    echo
    echo "### Queue and idle figures"
    echo
    echo "| case | metric | value |"
    echo "|---|---|---|"
    while IFS=, read -r cc tool mode metric files bytes value unit target verdict; do
      [[ $cc == 4-* || $cc == 5-* ]] && [ -z "$target" ] || continue
      printf '| %s | %s | %s %s |\n' "$cc" "$metric" "$value" "$unit"
    done < <(tail -n +2 "$RESULTS_CSV" | sort -t, -k1,1 -s)
  fi
} > "$R/summary.md"

# --- chart.svg: wall time vs batch size (case 2) ------------------------------------------
if grep -q '^2,' "$SUMMARY"; then
  {
    echo "# Generated by benches/summarize.sh from summary.csv: gnuplot chart.gp > chart.svg"
    echo "set terminal svg size 820,480 dynamic font 'sans,12' background rgb 'white'"
    echo "set title 'Batch of 1 MiB files at concurrency 16: median wall time (bars: min-max)'"
    echo "set xlabel 'files in the batch'"
    echo "set ylabel 'wall time (s)'"
    echo "set logscale xy"
    echo "set grid"
    echo "set key bottom right"
    echo "set xtics ($(awk -F, 'NR > 1 && $1 == 2 { print $3 }' "$SUMMARY" | sort -nu | paste -sd, -))"
    awk -F, 'NR > 1 && $1 == 2 { if (lo == "" || $3 < lo) lo = $3; if ($3 > hi) hi = $3 }
      END { printf "set xrange [%g:%g]\n", lo * 0.7, hi * 1.4 }' "$SUMMARY"
    plot=()
    i=0
    while IFS= read -r tool; do
      i=$((i + 1))
      echo "\$d$i << EOD"
      awk -F, -v t="$tool" 'NR > 1 && $1 == 2 && $2 == t { print $3, $7, $8, $9 }' "$SUMMARY" | sort -n
      echo "EOD"
      plot+=("\$d$i using 1:2:3:4 with yerrorlines lw 2 pt 7 title '$tool'")
    done < <(awk -F, 'NR > 1 && $1 == 2 { print $2 }' "$SUMMARY" | sort -u)
    printf 'plot '
    (IFS=,; echo "${plot[*]}")
  } > "$R/chart.gp"
  gnuplot "$R/chart.gp" > "$R/chart.svg"
fi
