#!/usr/bin/env bash
# Run footprint and sharing benchmark (issue 8): Redis memory above its
# baseline during one run of N rows (300,000 and 1,000,000 by default), and
# 20 concurrent uploads' total rows/s against one upload of the same size,
# each token worker launched by the pipeline (LAUNCHER=local). Text rows.
#
#   bash bench/runs.sh
#   SIZES="20000" UPLOADS=4 EACH=5000 bash bench/runs.sh     smoke run
#
# Raw RESULT lines go to bench/out/runs-raw-<stamp>.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
SIZES=${SIZES:-"300000 1000000"}
UPLOADS=${UPLOADS:-20}
EACH=${EACH:-20000}
REPEAT=${REPEAT:-3}
OUT=${OUT:-bench/out}
command -v redis-server >/dev/null || { echo "needs redis-server" >&2; exit 1; }
mkdir -p "$OUT"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/" ./cmd/server ./cmd/worker
go build -o "$tmp/pipelinebench" ./bench/cmd/pipelinebench
pb="$tmp/pipelinebench"
RAW="$OUT/runs-raw-$(date -u +%Y%m%dT%H%M%SZ).txt"
{
  echo "# date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "# command: SIZES=\"$SIZES\" UPLOADS=$UPLOADS EACH=$EACH REPEAT=$REPEAT bash bench/runs.sh"
  echo "# nproc: $(nproc); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# $(go version); $(redis-server --version)"
} | tee "$RAW"
for n in $SIZES; do
  "$pb" gencsv -rows "$n" -out "$tmp/rows-$n.csv" >/dev/null
  "$pb" runs -bin "$tmp" -csv "$tmp/rows-$n.csv" -rows "$n" -mode redismem -name "redismem-$n" | tee -a "$RAW"
done
"$pb" gencsv -rows "$EACH" -out "$tmp/each.csv" >/dev/null
# One upload and UPLOADS uploads of the same file, interleaved REPEAT times.
for i in $(seq 1 "$REPEAT"); do
  "$pb" runs -bin "$tmp" -csv "$tmp/each.csv" -rows "$EACH" -mode concurrent -uploads 1 -name "one-$i" | tee -a "$RAW"
  "$pb" runs -bin "$tmp" -csv "$tmp/each.csv" -rows "$EACH" -mode concurrent -uploads "$UPLOADS" -name "many-$i" | tee -a "$RAW"
done
echo "# raw results: $RAW" >&2
