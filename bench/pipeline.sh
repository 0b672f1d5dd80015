#!/usr/bin/env bash
# Pipeline benchmark: the whole CSV → rows → ZIP pipeline through the real
# binaries (cmd/server with LAUNCHER=none, a `report` worker and token
# workers as processes, a private redis-server, SQLite, LOCAL_SAVE=true),
# against the floor (one process rendering the same rows into the same ZIP
# with no queue) and the Redis ceiling for the commands a row costs.
# See bench/RESULTS.md.
#
#   bash bench/pipeline.sh
#   N=5000 N_XLSX=1000 N_BIG=0 SPLIT_BYTES=50000000 WEB_SECS=5 bash bench/pipeline.sh   smoke run
#
# N        text rows end to end and for the web figures (default 100,000)
# N_XLSX   xlsx rows end to end (default 20,000)
# N_PDF    pdf rows for the floor and end to end (default 2,000: a PDF row embeds its font subset; 0 skips it)
# N_BIG    text rows of the big run, one token worker (default 1,000,000; 0 skips it)
# SPLIT_BYTES  size of the CSV uploaded for the split RSS figure (default 1e9; 0 skips it)
# WEB_SECS, WEB_CONNS  wrk load on GET /csv_processing/<token> (default 20 s, 50)
#
# Needs: Go, redis-server, redis-benchmark, wrk (Debian redis-server,
# redis-tools, wrk). Raw RESULT lines and the Markdown summary go to bench/out/.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
N=${N:-100000}
N_XLSX=${N_XLSX:-20000}
N_PDF=${N_PDF:-2000}
N_BIG=${N_BIG:-1000000}
SPLIT_BYTES=${SPLIT_BYTES:-1000000000}
WEB_SECS=${WEB_SECS:-20}
WEB_CONNS=${WEB_CONNS:-50}
OUT=${OUT:-bench/out}
for c in redis-server redis-benchmark redis-cli wrk; do
  command -v "$c" >/dev/null || { echo "needs $c (apt-get install redis-server redis-tools wrk)" >&2; exit 1; }
done

mkdir -p "$OUT"
tmp=$(mktemp -d)
redis_pid=
trap '[ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT
go build -o "$tmp/" ./cmd/server ./cmd/worker
go build -o "$tmp/pipelinebench" ./bench/cmd/pipelinebench
pb="$tmp/pipelinebench"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
RAW="$OUT/pipeline-raw-$stamp.txt"
SUMMARY="$OUT/pipeline-summary-$stamp.md"
log() { echo "# $*" | tee -a "$RAW" >&2; }
t_start=$(date +%s)

{
  echo "# date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "# command: N=$N N_XLSX=$N_XLSX N_PDF=$N_PDF N_BIG=$N_BIG SPLIT_BYTES=$SPLIT_BYTES WEB_SECS=$WEB_SECS WEB_CONNS=$WEB_CONNS bash bench/pipeline.sh"
  echo "# nproc: $(nproc); memory: $(free -g | awk '/^Mem:/ {print $2 " GiB"}')"
  echo "# cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "# disk: $(df -h "$tmp" | awk 'NR==2 {print $1 " " $2}')"
  echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# $(go version)"
  echo "# $(redis-server --version)"
  echo "# $(wrk --version 2>&1 | head -1)"
} | tee "$RAW" >&2

"$pb" gencsv -rows "$N" -out "$tmp/text.csv" | tee -a "$RAW"
"$pb" gencsv -rows "$N_XLSX" -out "$tmp/xlsx.csv" | tee -a "$RAW"
[ "$N_PDF" -gt 0 ] && "$pb" gencsv -rows "$N_PDF" -out "$tmp/pdf.csv" | tee -a "$RAW"

# 1. Redis ceiling for the commands a row costs (see the e2e `cmd` lines),
# on a redis-server of its own; 50 clients, as engine.sh.
port=$("$pb" freeport)
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp" --logfile "$tmp/redis.log" &
redis_pid=$!
for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
log "redis-benchmark"
redis-cli -p "$port" eval "for i=1,1000 do redis.call('LPUSH', KEYS[1], string.rep('x', 400)) end
  for i=1,10 do redis.call('LPUSH', KEYS[2], string.rep('y', 400)) end" 2 bench:l bench:inflight >/dev/null
redis-cli -p "$port" set bench:k 100000 >/dev/null
# The fetch script of sidekiq/internal/rdb, one job per call, rotating one
# list onto itself so it never empties.
sha=$(redis-cli -p "$port" script load "local n = #KEYS / 2
for i = 1, n do
  local v = redis.call('LMOVE', KEYS[i], KEYS[n + i], 'RIGHT', 'LEFT')
  if v then return {i, v} end
end
return nil")
rb() { # name, pipeline, requests, command...
  local name=$1 p=$2 n=$3; shift 3
  local rps
  rps=$(redis-benchmark -p "$port" -c 50 -n "$n" -d 400 -r 1000000 -P "$p" -q --csv "$@" | tail -n +2 | head -1 | cut -d, -f2 | tr -d '"')
  echo "RESULT redis name=$name rps=$rps" | tee -a "$RAW"
}
for p in 1 100; do
  n=$((p == 1 ? 50000 : 500000))
  rb "ping-P$p" "$p" "$n" PING
  rb "evalsha-P$p" "$p" "$n" EVALSHA "$sha" 2 bench:l bench:l
  rb "hsetnx-P$p" "$p" "$n" HSETNX bench:h __rand_int__ done-rows/x/row-000001.txt
  rb "hlen-P$p" "$p" "$n" HLEN bench:h
  rb "get-P$p" "$p" "$n" GET bench:k
  rb "lrem-P$p" "$p" "$n" LREM bench:inflight 1 absent
done
kill "$redis_pid"; wait "$redis_pid" 2>/dev/null || true; redis_pid=

# 2. The floor, then the same rows end to end, side by side.
log "floor"
"$pb" floor -csv "$tmp/text.csv" -type text -name text-floor | tee -a "$RAW"
"$pb" floor -csv "$tmp/text.csv" -type text -name text-floor-store -store | tee -a "$RAW"
"$pb" floor -csv "$tmp/xlsx.csv" -type xlsx -name xlsx-floor | tee -a "$RAW"
[ "$N_PDF" -gt 0 ] && "$pb" floor -csv "$tmp/pdf.csv" -type pdf -name pdf-floor | tee -a "$RAW"
log "end to end"
e2e() { "$pb" e2e -bin "$tmp" "$@" | tee -a "$RAW"; }
e2e -csv "$tmp/text.csv" -rows "$N" -type text -workers 1 -name text-w1 -load "${WEB_SECS}s" -conns "$WEB_CONNS"
e2e -csv "$tmp/text.csv" -rows "$N" -type text -workers 2 -name text-w2
e2e -csv "$tmp/xlsx.csv" -rows "$N_XLSX" -type xlsx -workers 1 -name xlsx-w1
e2e -csv "$tmp/xlsx.csv" -rows "$N_XLSX" -type xlsx -workers 2 -name xlsx-w2
[ "$N_PDF" -gt 0 ] && e2e -csv "$tmp/pdf.csv" -rows "$N_PDF" -type pdf -workers 1 -name pdf-w1
rm -f "$tmp/text.csv" "$tmp/xlsx.csv" "$tmp/pdf.csv"

# 3. The big run.
if [ "$N_BIG" -gt 0 ]; then
  log "big run"
  "$pb" gencsv -rows "$N_BIG" -out "$tmp/big.csv" | tee -a "$RAW"
  e2e -csv "$tmp/big.csv" -rows "$N_BIG" -type text -workers 1 -name "text-big-w1" -deadline 60m
  rm -f "$tmp/big.csv"
fi

# 4. Split RSS: a big CSV by reference (wide rows: 1 KiB each, so Redis
# holds about 1.3x the file while no token worker drains it).
if [ "$SPLIT_BYTES" -gt 0 ]; then
  log "split"
  rows=$("$pb" gencsv -bytes "$SPLIT_BYTES" -pad 900 -out "$tmp/split.csv" | tee -a "$RAW" | sed 's/.*rows=\([0-9]*\).*/\1/')
  "$pb" split -bin "$tmp" -csv "$tmp/split.csv" -rows "$rows" -name split | tee -a "$RAW"
  rm -f "$tmp/split.csv"
fi

echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$RAW" >&2
echo "# wall time: $(( $(date +%s) - t_start )) s" | tee -a "$RAW" >&2
grep '^# ' "$RAW" | grep -v '^# redis-bench\|^# floor\|^# end to end\|^# big run\|^# split$' > "$SUMMARY"
echo >> "$SUMMARY"
"$pb" report < "$RAW" >> "$SUMMARY"
cat "$SUMMARY"
echo "raw: $RAW  summary: $SUMMARY" >&2
