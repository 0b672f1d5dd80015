#!/usr/bin/env bash
# Memory benchmark (issue 19 item 7): the RSS of the all-in-one server
# (`make run`: embedded Redis, every worker in the server process) and, apart,
# of the split layout's server, `report` worker and token worker (the token
# worker runs the finalizer), through one text run of N rows. VmRSS and
# VmHWM from /proc/<pid>/status every 0.5 s through the split, the rows, the
# finalize and AFTER seconds past the end. Goal: each process under 150 MB,
# flat, and back down after the run. See bench/RESULTS.md.
#
#   bash bench/memory.sh                 3,400,000 rows
#   N=200000 bash bench/memory.sh        quick mode
#   N=10000000 bash bench/memory.sh      the 10 M case
#   LAYOUTS=allinone bash bench/memory.sh
#   PALLAREL_HEAPPROFILE=/tmp/heap bash bench/memory.sh   heap profiles at each new peak
#
# N        text rows (default 3,400,000)
# LAYOUTS  allinone and/or split (default both)
# AFTER    seconds sampled after the run ends (default 60)
# BIN      directory of prebuilt server and worker binaries (default: built from this tree)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
N=${N:-3400000}
LAYOUTS=${LAYOUTS:-allinone split}
AFTER=${AFTER:-60}
OUT=${OUT:-bench/out}
command -v redis-server >/dev/null || { echo "needs redis-server (apt-get install redis-server)" >&2; exit 1; }
mkdir -p "$OUT"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/" ./bench/cmd/memorybench ./bench/cmd/pipelinebench
bin=${BIN:-}
if [ -z "$bin" ]; then
  go build -o "$tmp/" ./cmd/server ./cmd/worker
  bin=$tmp
fi
mb="$tmp/memorybench"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
RAW="$OUT/memory-raw-$stamp.txt"
{
  echo "# date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "# command: N=$N LAYOUTS='$LAYOUTS' AFTER=$AFTER bash bench/memory.sh"
  echo "# commit: $(git rev-parse --short HEAD)$(git diff --quiet || echo ' (dirty)')"
  echo "# nproc: $(nproc); memory: $(free -g | awk '/^Mem:/ {print $2 " GiB"}')"
  echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# $(go version)"
  echo "# $(redis-server --version)"
} | tee "$RAW" >&2
"$tmp/pipelinebench" gencsv -rows "$N" -out "$tmp/text.csv" >/dev/null
echo "# csv: $N rows, $(( $(stat -c %s "$tmp/text.csv") / 1048576 )) MiB" | tee -a "$RAW" >&2
for layout in $LAYOUTS; do
  "$mb" run -layout "$layout" -bin "$bin" -csv "$tmp/text.csv" -rows "$N" -after "${AFTER}s" \
    -samples "$OUT/memory-samples-$layout-$N-$stamp.tsv" | tee -a "$RAW"
done
echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$RAW" >&2
echo "raw: $RAW  samples: $OUT/memory-samples-*-$N-$stamp.tsv" >&2
