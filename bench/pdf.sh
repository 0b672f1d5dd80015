#!/usr/bin/env bash
# PDF benchmark (issue 21 item 1): CPU per PDF row and bytes per file of
# the renderer before (BEFORE, default ac6e720: gopdf with a font subset per
# file) and after (this tree), side by side in one run, in interleaved
# rounds; then the pipeline's PDF rows/s (the real binaries, one token
# worker at -c 10) against the renderer's floor (pipelinebench floor: the
# same rows rendered into the same ZIP by one process, no queue).
# CPU is utime+stime from getrusage / /proc, so it holds under load; rows/s
# on a loaded machine also depend on how many threads each side runs (the
# token worker's 10 get more of a shared core than the floor's 2), so the
# pipeline is also put against the floor in CPU per row. Each process's CPU
# includes its start (the font is indexed in ~40 ms).
#
#   bash bench/pdf.sh
#   N_PDF=500 ROUNDS=1 bash bench/pdf.sh                   smoke run
#
# N_PDF   rows (default 2,000; the generated Japanese CSV of bench/pipeline.sh)
# ROUNDS  interleaved rounds of each measurement (default 3)
# BEFORE  the commit to compare with (default ac6e720)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
N_PDF=${N_PDF:-2000}
ROUNDS=${ROUNDS:-3}
BEFORE=${BEFORE:-ac6e720}
OUT=${OUT:-bench/out}
command -v redis-server >/dev/null || { echo "needs redis-server (apt-get install redis-server)" >&2; exit 1; }
mkdir -p "$OUT"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/before-src" "$tmp/before" "$tmp/after"
git archive "$BEFORE" | tar -x -C "$tmp/before-src"
(cd "$tmp/before-src" && go build -o "$tmp/before/" ./cmd/server ./cmd/worker ./bench/cmd/pipelinebench)
go build -o "$tmp/after/" ./cmd/server ./cmd/worker ./bench/cmd/pipelinebench
stamp=$(date -u +%Y%m%dT%H%M%SZ)
RAW="$OUT/pdf-raw-$stamp.txt"
{
  echo "# date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "# command: N_PDF=$N_PDF ROUNDS=$ROUNDS BEFORE=$BEFORE bash bench/pdf.sh (after: $(git rev-parse --short HEAD)$(git diff --quiet || echo ' + uncommitted changes'))"
  echo "# nproc: $(nproc); memory: $(free -g | awk '/^Mem:/ {print $2 " GiB"}')"
  echo "# cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# $(go version)"
} | tee "$RAW" >&2
t_start=$(date +%s)
"$tmp/after/pipelinebench" gencsv -rows "$N_PDF" -out "$tmp/pdf.csv" >/dev/null

# Floors: one rendering goroutine (CPU per row without contention) and
# nproc of them (the rows/s the pipeline is held to), interleaved.
for i in $(seq "$ROUNDS"); do
  for side in before after; do
    for par in 1 "$(nproc)"; do
      "$tmp/$side/pipelinebench" floor -csv "$tmp/pdf.csv" -type pdf -par "$par" -name "$side-par$par" | tee -a "$RAW"
    done
  done
done
# End to end, interleaved; CPU of every process (server, report worker,
# token worker, redis-server) from /proc.
for i in $(seq "$ROUNDS"); do
  for side in before after; do
    "$tmp/$side/pipelinebench" e2e -bin "$tmp/$side" -csv "$tmp/pdf.csv" -rows "$N_PDF" -type pdf -workers 1 -name "$side-e2e" \
      | grep -E '^RESULT (e2e|rss)' | tee -a "$RAW"
  done
done
echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$RAW" >&2
echo "# wall time: $(( $(date +%s) - t_start )) s" | tee -a "$RAW" >&2

# Summary: medians over the rounds. A floor's ZIP stores each file as is,
# so its bytes per row are a file's bytes plus ~110 B of ZIP headers.
awk -v rows="$N_PDF" '
function kv(s,   a, n, i, p) { delete F; n = split(s, a, " "); for (i = 1; i <= n; i++) { p = index(a[i], "="); if (p) F[substr(a[i], 1, p - 1)] = substr(a[i], p + 1) } }
function median(list,   a, n, i, j, t) { n = split(list, a, " "); for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t } return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
/^RESULT floor/ { kv($0); k = F["name"]; cpu[k] = cpu[k] " " F["cpu_us_row"]; rate[k] = rate[k] " " F["rate"]; zip[k] = zip[k] " " F["zip_mb"] * 1048576 / F["rows"] }
/^RESULT e2e/ { kv($0); k = F["name"]; erate[k] = erate[k] " " F["rate"]; cur[k] = ++runs[k] }
/^RESULT rss scenario=e2e/ { kv($0); k = F["name"]; p = F["proc"]; procs[p] = 1; tot[k, cur[k]] += F["cpu_s"]; pc[k, p, cur[k]] += F["cpu_s"] }
END {
  for (k in runs) for (n = 1; n <= runs[k]; n++) { tcpu[k] = tcpu[k] " " tot[k, n] * 1e6 / rows; for (p in procs) pcpu[k, p] = pcpu[k, p] " " pc[k, p, n] * 1e6 / rows }
  printf "| | before (%s) | after | after / before |\n|---|---|---|---|\n", "gopdf"
  printf "| CPU per row, floor, 1 goroutine (µs) | %.0f | %.0f | %.3f |\n", median(cpu["before-par1"]), median(cpu["after-par1"]), median(cpu["after-par1"]) / median(cpu["before-par1"])
  np = ""; for (k in cpu) if (k ~ /^after-par/ && k != "after-par1") np = substr(k, 10)
  if (np == "") np = 1
  printf "| CPU per row, floor, %s goroutines (µs) | %.0f | %.0f | %.3f |\n", np, median(cpu["before-par" np]), median(cpu["after-par" np]), median(cpu["after-par" np]) / median(cpu["before-par" np])
  printf "| bytes per file (+ ZIP headers) | %.0f | %.0f | %.3f |\n", median(zip["before-par1"]), median(zip["after-par1"]), median(zip["after-par1"]) / median(zip["before-par1"])
  printf "| floor rows/s, %s goroutines | %.0f | %.0f | %.2f |\n", np, median(rate["before-par" np]), median(rate["after-par" np]), median(rate["after-par" np]) / median(rate["before-par" np])
  printf "| pipeline rows/s (1 token worker, -c 10) | %.0f | %.0f | %.2f |\n", median(erate["before-e2e"]), median(erate["after-e2e"]), median(erate["after-e2e"]) / median(erate["before-e2e"])
  printf "| pipeline / floor rows/s | %.2f | %.2f | |\n", median(erate["before-e2e"]) / median(rate["before-par" np]), median(erate["after-e2e"]) / median(rate["after-par" np])
  printf "| pipeline CPU per row, all processes (µs) | %.0f | %.0f | %.3f |\n", median(tcpu["before-e2e"]), median(tcpu["after-e2e"]), median(tcpu["after-e2e"]) / median(tcpu["before-e2e"])
  printf "| floor CPU / pipeline CPU per row (rows per core-second, pipeline against floor) | %.2f | %.2f | |\n", median(cpu["before-par" np]) / median(tcpu["before-e2e"]), median(cpu["after-par" np]) / median(tcpu["after-e2e"])
  for (p in procs) printf "| … of which %s (µs) | %.0f | %.0f | |\n", p, median(pcpu["before-e2e", p]), median(pcpu["after-e2e", p])
}' "$RAW" | tee "$OUT/pdf-summary-$stamp.md"
echo "raw: $RAW  summary: $OUT/pdf-summary-$stamp.md" >&2
