#!/usr/bin/env bash
# All-in-one benchmark (issue 8): `make run`'s server with its embedded
# Redis (a redis-server child with an append-only file in DATA_DIR) against
# the same server and upload on an external redis-server (no persistence,
# as the other benchmarks), side by side; the miniredis fallback at a
# smaller size; the finalizer's ZIP step alone at a million entries
# (reportzip against archive/zip, peak RSS); and, unless N_BIG=0, a
# 1,000,000-row run through the real binaries with the token worker's peak
# RSS (it runs the finalizer). See bench/RESULTS.md.
#
#   bash bench/allinone.sh
#   N=20000 RUNS=1 N_MINI=5000 N_ZIP=100000 N_BIG=0 bash bench/allinone.sh   smoke run
#
# N       text rows per all-in-one run (default 200,000)
# RUNS    runs of each mode, alternating (default 3)
# N_MINI  rows of the miniredis run (default 20,000; 0 skips it: it is quadratic)
# N_ZIP   entries of the ZIP step (default 1,000,000)
# N_BIG   rows of the full run for the finalizer RSS (default 1,000,000; 0 skips it)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
N=${N:-200000}
RUNS=${RUNS:-3}
N_MINI=${N_MINI:-20000}
N_ZIP=${N_ZIP:-1000000}
N_BIG=${N_BIG:-1000000}
OUT=${OUT:-bench/out}
command -v redis-server >/dev/null || { echo "needs redis-server (apt-get install redis-server)" >&2; exit 1; }
mkdir -p "$OUT"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/" ./cmd/server ./cmd/worker ./bench/cmd/allinonebench ./bench/cmd/pipelinebench
ab="$tmp/allinonebench"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
RAW="$OUT/allinone-raw-$stamp.txt"
SUMMARY="$OUT/allinone-summary-$stamp.md"
t_start=$(date +%s)
{
  echo "# date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "# command: N=$N RUNS=$RUNS N_MINI=$N_MINI N_ZIP=$N_ZIP N_BIG=$N_BIG bash bench/allinone.sh"
  echo "# nproc: $(nproc); memory: $(free -g | awk '/^Mem:/ {print $2 " GiB"}')"
  echo "# cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# $(go version)"
  echo "# $(redis-server --version)"
} | tee "$RAW" >&2

"$ab" gencsv -rows "$N" -out "$tmp/text.csv"
for i in $(seq "$RUNS"); do
  for mode in embedded external; do
    "$ab" run -bin "$tmp" -csv "$tmp/text.csv" -rows "$N" -mode "$mode" | tee -a "$RAW"
  done
done
if [ "$N_MINI" -gt 0 ]; then
  "$ab" gencsv -rows "$N_MINI" -out "$tmp/mini.csv"
  for mode in miniredis embedded external; do
    "$ab" run -bin "$tmp" -csv "$tmp/mini.csv" -rows "$N_MINI" -mode "$mode" | tee -a "$RAW"
  done
fi
rm -f "$tmp/text.csv" "$tmp/mini.csv"

for i in $(seq "$RUNS"); do
  "$ab" zipmem -entries "$N_ZIP" -writer reportzip | tee -a "$RAW"
done
"$ab" zipmem -entries "$N_ZIP" -writer archivezip | tee -a "$RAW"

if [ "$N_BIG" -gt 0 ]; then
  "$tmp/pipelinebench" gencsv -rows "$N_BIG" -out "$tmp/big.csv" >/dev/null
  "$tmp/pipelinebench" e2e -bin "$tmp" -csv "$tmp/big.csv" -rows "$N_BIG" -type text -workers 1 -name "text-big-w1" -deadline 30m \
    | grep -E '^RESULT (e2e|rss)' | tee -a "$RAW"
  rm -f "$tmp/big.csv"
fi

echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$RAW" >&2
echo "# wall time: $(( $(date +%s) - t_start )) s" | tee -a "$RAW" >&2
grep '^# ' "$RAW" > "$SUMMARY"
echo >> "$SUMMARY"
"$ab" report < "$RAW" >> "$SUMMARY"
cat "$SUMMARY"
echo "raw: $RAW  summary: $SUMMARY" >&2
