#!/usr/bin/env bash
# benches/summarize.sh RESULTS_DIR MODE PENDING_SEGMENTS
# Turns runs.csv (one row per timed run) into summary.csv (median, min-max,
# throughput, CPU, peak RSS, ratio to the best peer), the target rows of
# results.csv, summary.md (the tables of BENCHMARKS.md) and chart.svg.
# Called by benches/run.sh; can be rerun on a results directory by hand.
set -euo pipefail
R=$1
MODE=${2:-full}
PENDING_SEGMENTS=${3:-0}
RUNS=$R/runs.csv
SUMMARY=$R/summary.csv
RESULTS_CSV=$R/results.csv

# Group by (case, tool, files): sort the walls to take the median.
tail -n +2 "$RUNS" | sort -t, -k1,1 -k3,3n -k2,2 -k7,7g | awk -F, '
  function flush() {
    if (n == 0) return
    med = (n % 2) ? w[(n + 1) / 2] : (w[n / 2] + w[n / 2 + 1]) / 2
    # CPU median, independently sorted.
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (c[j] < c[i]) { t = c[i]; c[i] = c[j]; c[j] = t }
    cmed = (n % 2) ? c[(n + 1) / 2] : (c[n / 2] + c[n / 2 + 1]) / 2
    printf "%s,%s,%d,%d,%d,%d,%.3f,%.3f,%.3f,%.1f,%.2f,%.1f\n", kc, kt, kf, kb, kk, n, med, w[1], w[n],
      kf * kb / 1048576 / med, cmed, rss / 1024
    n = 0; rss = 0
  }
  {
    key = $1 "," $2 "," $3
    if (key != last) { flush(); last = key; kc = $1; kt = $2; kf = $3; kb = $4; kk = $5 }
    n++; w[n] = $7; c[n] = $8 + $9; if ($10 > rss) rss = $10
  }
  END { flush() }' > "$R/.groups"

# Ratio of every row to the best peer of its (case, files): the fastest
# median among curl and aria2c ("+fsync" rows are references, not peers).
awk -F, -v OFS=, '
  NR == FNR {
    g = $1 "," $3
    if ($2 !~ /^minimax-dl/ && $2 !~ /\+fsync/ && (!(g in best) || $7 < best[g])) { best[g] = $7; bname[g] = $2 }
    next
  }
  { g = $1 "," $3; print $0, sprintf("%.3f", $7 / best[g]), bname[g] }
' "$R/.groups" "$R/.groups" > "$R/.rows"
{
  echo "case,tool,files,file_bytes,concurrency,reps,wall_median_s,wall_min_s,wall_max_s,throughput_mib_s,cpu_median_s,max_rss_mib,ratio_vs_best_peer,best_peer"
  cat "$R/.rows"
} > "$SUMMARY"

# Targets (cases 1-3) and per-row figures, appended to results.csv.
awk -F, -v mode="$MODE" -v pending="$PENDING_SEGMENTS" '
  function row(c, tool, metric, files, bytes, value, unit, target, verdict) {
    printf "%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n", c, tool, mode, metric, files, bytes, value, unit, target, verdict
  }
  function v(ok) { return ok ? "met" : "MISSED" }
  NR > 1 {
    c = $1; t = $2; f = $3; b = $4
    wall[c, t, f] = $7; rss[c, t, f] = $12; bytes[c, f] = b
    if (t ~ /^minimax-dl/) mdl[c, f] = t
    cases[c, f] = 1
    if (c == 1) { sizes[++ns] = f "," b }
    if (c == 2 && f > maxf2) maxf2 = f
    row(c, t, "wall_median_s", f, b, $7, "s", "", "")
    row(c, t, "throughput_mib_s", f, b, $10, "MiB/s", "", "")
    row(c, t, "cpu_s", f, b, $11, "s", "", "")
    row(c, t, "max_rss_mib", f, b, $12, "MiB", "", "")
    if (t ~ /^minimax-dl/) row(c, t, "ratio_vs_best_peer(" $14 ")", f, b, $13, "x", "", "")
  }
  END {
    # Case 1: one file per size; the biggest is "4 GiB", the other "256 MiB".
    big = 0; small = 0
    for (k in bytes) { split(k, p, SUBSEP); if (p[1] == 1) { if (bytes[k] > big) big = bytes[k]; if (small == 0 || bytes[k] < small) small = bytes[k] } }
    if (big > 0) {
      m = mdl[1, 1]
      tr = wall[1, "curl", 1] / wall[1, m, 1]
      row(1, m, "throughput_vs_curl", 1, big, sprintf("%.3f", tr), "x", ">=1.0", v(tr >= 1.0))
      row(1, m, "peak_rss_mib", 1, big, rss[1, m, 1], "MiB", "<=32", v(rss[1, m, 1] <= 32))
    }
  }
' "$SUMMARY" >> "$RESULTS_CSV"

# Case 1 has two sizes in one (case, files=1) group key: handle them from runs.csv directly.
awk -F, -v mode="$MODE" '
  NR > 1 && $1 == 1 { key = $2 "," $4; n[key]++; w[key, n[key]] = $7; if ($10 > rss[key]) rss[key] = $10; sz[$4] = 1; tools[$2] = 1 }
  function med(key,   i, j, t, k, a) {
    k = n[key]; for (i = 1; i <= k; i++) a[i] = w[key, i]
    for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return (k % 2) ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
  }
  END {
    big = 0; small = 0
    for (s in sz) { if (s + 0 > big) big = s + 0; if (small == 0 || s + 0 < small) small = s + 0 }
    for (t in tools) if (t ~ /^minimax-dl/) m = t
    if (m == "") exit
    split(big " " small, list, " ")
    for (i = 1; i <= (big == small ? 1 : 2); i++) {
      s = list[i]; tgt = (i == 1) ? 1.0 : 0.9; rt = (i == 1) ? 32 : 35.2
      r = med("curl," s) / med(m "," s)
      printf "1-big-file,%s,%s,throughput_vs_curl,1,%s,%.3f,x,>=%.1f,%s\n", m, mode, s, r, tgt, (r >= tgt) ? "met" : "MISSED"
      printf "1-big-file,%s,%s,peak_rss_mib,1,%s,%.1f,MiB,<=%s,%s\n", m, mode, s, rss[m "," s] / 1024, rt, (rss[m "," s] / 1024 <= rt) ? "met" : "MISSED"
    }
    if (big != small) {
      q = rss[m "," big] / rss[m "," small]
      printf "1-big-file,%s,%s,peak_rss_big_over_small,1,%s,%.3f,x,<=1.10,%s\n", m, mode, big, q, (q <= 1.10) ? "met" : "MISSED"
    }
  }' "$RUNS" > "$R/.case1"

# Replace the generic case-1 target rows (the group key merges the two sizes) with the exact ones.
grep -v '^1,.*,\(throughput_vs_curl\|peak_rss_mib\),' "$RESULTS_CSV" > "$R/.results" || true
cat "$R/.case1" >> "$R/.results"

# Cases 2 and 3: the named peer.
awk -F, -v mode="$MODE" -v pending="$PENDING_SEGMENTS" '
  NR > 1 { wall[$1, $2, $3] = $7; rss[$1, $2, $3] = $12; if ($2 ~ /^minimax-dl/) m[$1] = $2; if ($1 == 2 && $3 > f2) f2 = $3; if ($1 == 3) f3 = $3; if ($1 == 2) files2[$3] = $4; if ($1 == 3) bytes3 = $4 }
  END {
    if (f2 > 0) {
      r = wall[2, m[2], f2] / wall[2, "aria2c -j16", f2]
      printf "2-batch,%s,%s,wall_vs_aria2c_j16,%s,%s,%.3f,x,<=1.0,%s\n", m[2], mode, f2, files2[f2], r, (r <= 1.0) ? "met" : "MISSED"
      printf "2-batch,%s,%s,peak_rss_mib,%s,%s,%.1f,MiB,<=48,%s\n", m[2], mode, f2, files2[f2], rss[2, m[2], f2], (rss[2, m[2], f2] <= 48) ? "met" : "MISSED"
    }
    if (f3 > 0) {
      r = wall[3, m[3], f3] / wall[3, "aria2c -x8 -s8", f3]
      verdict = (r <= 1.0) ? "met" : "MISSED"
      if (pending == 1) verdict = verdict " (segments pending)"
      printf "3-capped-cdn,%s,%s,wall_vs_aria2c_x8_s8,%s,%s,%.3f,x,<=1.0,%s\n", m[3], mode, f3, bytes3, r, verdict
    }
  }' "$SUMMARY" >> "$R/.results"
# Case labels: numbers -> names, like the rows run.sh and the queue bench write.
sed -e 's/^1,/1-big-file,/' -e 's/^2,/2-batch,/' -e 's/^3,/3-capped-cdn,/' "$R/.results" > "$RESULTS_CSV"
rm -f "$R/.results" "$R/.case1" "$R/.groups" "$R/.rows"

# --- summary.md ----------------------------------------------------------------------
human_bytes() { awk -v b="$1" 'BEGIN { if (b >= 1073741824) printf "%g GiB", b / 1073741824; else if (b >= 1048576) printf "%g MiB", b / 1048576; else printf "%d B", b }'; }
{
  echo "## Results ($MODE mode)"
  echo
  cat "$R/machine.txt" | sed 's/^/    /'
  echo
  echo "Wall time is the median of the repetitions (min–max in brackets); CPU is user+sys"
  echo "seconds (median); peak RSS is the largest of the repetitions (\`/usr/bin/time %M\`;"
  echo "for the curl loop, the largest single process). Ratio = minimax-dl / best peer (wall)."
  for c in 1 2 3; do
    grep -q "^$c," "$SUMMARY" || continue
    echo
    case $c in
      1) echo "### Case 1: one big file, unthrottled" ;;
      2) echo "### Case 2: batches of 1 MiB files, concurrency 16" ;;
      3) echo "### Case 3: one file, CDN capped per connection (nginx limit_rate 8m)" ;;
    esac
    echo
    echo "| tool | files × size | wall s (min–max) | MiB/s | CPU s | peak RSS MiB | wall ratio to best peer |"
    echo "|---|---|---|---|---|---|---|"
    # case 1: runs.csv has both sizes under files=1; summarise per size here.
    if [ "$c" = 1 ]; then
      tail -n +2 "$RUNS" | awk -F, '$1 == 1' | sort -t, -k4,4gr -k2,2 -k7,7g | awk -F, '
        function flush(  med, cm, i, j, t) {
          if (n == 0) return
          med = (n % 2) ? w[(n + 1) / 2] : (w[n / 2] + w[n / 2 + 1]) / 2
          for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (c[j] < c[i]) { t = c[i]; c[i] = c[j]; c[j] = t }
          cm = (n % 2) ? c[(n + 1) / 2] : (c[n / 2] + c[n / 2 + 1]) / 2
          rows[++nr] = kt "|" kb "|" med "|" w[1] "|" w[n] "|" cm "|" rss / 1024
          n = 0; rss = 0
        }
        { key = $2 "," $4; if (key != last) { flush(); last = key; kt = $2; kb = $4 } n++; w[n] = $7; c[n] = $8 + $9; if ($10 > rss) rss = $10 }
        END {
          flush()
          for (i = 1; i <= nr; i++) { split(rows[i], p, "|"); if (p[1] !~ /^minimax-dl/ && p[1] !~ /\+fsync/ && (!(p[2] in best) || p[3] < best[p[2]])) best[p[2]] = p[3] }
          for (i = 1; i <= nr; i++) {
            split(rows[i], p, "|")
            size = (p[2] >= 1073741824) ? sprintf("%g GiB", p[2] / 1073741824) : sprintf("%g MiB", p[2] / 1048576)
            tool = (p[1] ~ /^minimax-dl/) ? "**" p[1] "**" : p[1]
            ratio = (p[1] ~ /^minimax-dl/) ? sprintf("**%.2f×**", p[3] / best[p[2]]) : sprintf("%.2f×", p[3] / best[p[2]])
            printf "| %s | 1 × %s | %.2f (%.2f–%.2f) | %.0f | %.2f | %.1f | %s |\n", tool, size, p[3], p[4], p[5], p[2] / 1048576 / p[3], p[6], p[7], ratio
          }
        }'
    else
      awk -F, -v c="$c" 'NR > 1 && $1 == c {
        size = ($4 >= 1073741824) ? sprintf("%g GiB", $4 / 1073741824) : sprintf("%g MiB", $4 / 1048576)
        tool = ($2 ~ /^minimax-dl/) ? "**" $2 "**" : $2
        ratio = ($2 ~ /^minimax-dl/) ? sprintf("**%.2f×**", $13) : sprintf("%.2f×", $13)
        printf "| %s | %d × %s | %.2f (%.2f–%.2f) | %.0f | %.2f | %.1f | %s |\n", tool, $3, size, $7, $8, $9, $10, $11, $12, ratio
      }' "$SUMMARY"
    fi
  done
  if [ "$PENDING_SEGMENTS" = 1 ]; then
    echo
    echo "Case 3: \`--segments\` is pending (not listed by \`run --help\`, or it made one request): minimax-dl ran with one connection, once."
  fi
  echo
  echo "### Targets"
  echo
  echo "| case | metric | size | value | target | verdict |"
  echo "|---|---|---|---|---|---|"
  awk -F, 'NR > 1 && $9 != "" {
    size = ($5 == "" ? "" : $5 " × ") (($6 == "") ? "" : (($6 >= 1073741824) ? sprintf("%g GiB", $6 / 1073741824) : sprintf("%g MiB", $6 / 1048576)))
    printf "| %s | %s | %s | %s %s | %s | %s |\n", $1, $4, size, $7, $8, $9, $10
  }' "$RESULTS_CSV"
  echo
  echo "### Other figures"
  echo
  echo "| case | metric | value |"
  echo "|---|---|---|"
  awk -F, 'NR > 1 && $9 == "" && ($1 ~ /^4/ || $1 ~ /^5/) { printf "| %s | %s | %s %s |\n", $1, $4, $7, $8 }' "$RESULTS_CSV"
} > "$R/summary.md"

# --- chart: wall time vs batch size (case 2) -------------------------------------------
if grep -q '^2,' "$SUMMARY"; then
  plot=()
  i=0
  while IFS= read -r tool; do
    i=$((i + 1))
    awk -F, -v t="$tool" 'NR > 1 && $1 == 2 && $2 == t { print $3, $7, $8, $9 }' "$SUMMARY" | sort -n > "$R/.chart-$i.dat"
    plot+=("'$R/.chart-$i.dat' using 1:2:3:4 with yerrorlines lw 2 pt 7 title '$tool'")
  done < <(awk -F, 'NR > 1 && $1 == 2 { print $2 }' "$SUMMARY" | sort -u)
  {
    echo "set terminal svg size 800,480 dynamic font 'sans,12' background rgb 'white'"
    echo "set output '$R/chart.svg'"
    echo "set title 'Batch of 1 MiB files, concurrency 16 (median wall time, bars: min-max)'"
    echo "set xlabel 'files in the batch'"
    echo "set ylabel 'wall time (s)'"
    echo "set logscale xy"
    echo "set grid"
    echo "set key top left"
    echo "set xtics ($(awk -F, 'NR > 1 && $1 == 2 { print $3 }' "$SUMMARY" | sort -nu | paste -sd, -))"
    printf 'plot '
    (IFS=,; echo "${plot[*]}")
  } > "$R/chart.gp"
  gnuplot "$R/chart.gp"
  rm -f "$R"/.chart-*.dat
  sed -i "s|'$R/.chart-[0-9]*.dat'|'-'|g" "$R/chart.gp"   # the data lives in summary.csv
fi
