#!/usr/bin/env bash
# Engine benchmark: Pallarel's Go Sidekiq engine against Ruby Sidekiq 8.0.6
# (what the Rails app runs), 7.3.2 and 6.4.1 and against the Redis ceiling,
# on one fresh redis-server that this script starts on a free port and stops.
# Both sides log at LOG_LEVEL (default warn: no per-job lines on either side;
# LOG_LEVEL=info gives both Sidekiq's INFO line per job). Drain runs are
# interleaved (run 1 of every worker, then run 2...), so load drifts hit all
# alike; the report gives medians and the ratios to Ruby. See bench/RESULTS.md.
#
#   bash bench/engine.sh            (or: make bench-engine)
#   N=20000 RUNS=1 bash bench/engine.sh   quick smoke run
#
# Needs: Go, redis-server and redis-benchmark (Debian redis-server,
# redis-tools), and Ruby Sidekiq from sidekiq-peers (SIDEKIQ_PEERS, default
# shared/tools/sidekiq-peers beside the repo). Raw RESULT lines and the
# Markdown summary go to bench/out/.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
N=${N:-100000}
RUNS=${RUNS:-3}
LOG_LEVEL=${LOG_LEVEL:-warn}
export BENCH_LOG_LEVEL=$LOG_LEVEL
OUT=${OUT:-bench/out}
PEERS=${SIDEKIQ_PEERS:-}
if [ -z "$PEERS" ]; then
  for p in ../shared/tools/sidekiq-peers /work/shared/tools/sidekiq-peers; do
    [ -x "$p" ] && { PEERS=$(cd "$(dirname "$p")" && pwd)/sidekiq-peers; break; }
  done
fi
[ -n "$PEERS" ] || { echo "sidekiq-peers not found: set SIDEKIQ_PEERS" >&2; exit 1; }
command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null \
  || { echo "needs redis-server and redis-benchmark (apt-get install redis-server redis-tools)" >&2; exit 1; }

mkdir -p "$OUT"
tmp=$(mktemp -d)
go build -o "$tmp/benchworker" ./bench/cmd/benchworker
go build -o "$tmp/enginebench" ./bench/cmd/enginebench
port=$("$tmp/enginebench" freeport)
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
  --dir "$tmp" --logfile "$tmp/redis.log" &
redis_pid=$!
trap 'kill "$redis_pid" 2>/dev/null; wait "$redis_pid" 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
URL="redis://127.0.0.1:$port/0"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
RAW="$OUT/raw-$stamp.txt"
SUMMARY="$OUT/summary-$stamp.md"
log() { echo "# $*" | tee -a "$RAW" >&2; }

{
  echo "# date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "# command: N=$N RUNS=$RUNS LOG_LEVEL=$LOG_LEVEL bash bench/engine.sh"
  echo "# nproc: $(nproc); memory: $(free -g | awk '/^Mem:/ {print $2 " GiB"}')"
  echo "# cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# $(go version)"
  echo "# $(ruby --version) / sidekiq: $("$PEERS" check | tr '\n' ' ')"
  echo "# $(redis-server --version)"
} | tee "$RAW" >&2

# 2. Bulk push.
log "bulk push of $N jobs"
"$tmp/enginebench" push -redis "$URL" -n "$N" -runs "$RUNS" | tee -a "$RAW"
(cd bench/ruby && N=$N RUNS=$RUNS NAME=ruby8 REDIS_URL=$URL "$PEERS" ruby 8 pushbulk.rb) | tee -a "$RAW"
(cd bench/ruby && N=$N RUNS=$RUNS NAME=ruby7 REDIS_URL=$URL "$PEERS" ruby 7 pushbulk.rb) | tee -a "$RAW"
(cd bench/ruby && N=$N RUNS=$RUNS NAME=ruby6 REDIS_URL=$URL "$PEERS" ruby 6 pushbulk.rb) | tee -a "$RAW"

# 1 and 4. Drain, with the worker's RSS; one run of each worker per round.
drain() { "$tmp/enginebench" drain -redis "$URL" -n "$N" -runs 1 -run "$run" "$@" | tee -a "$RAW"; }
log "drain of $N no-op jobs, $RUNS interleaved rounds, logging at $LOG_LEVEL"
for run in $(seq "$RUNS"); do
  drain -name ruby8-c10 -dialect 8 -dir bench/ruby -- "$PEERS" sidekiq 8 -r ./jobs.rb -q bench -c 10
  drain -name go-reliable-c10 -- "$tmp/benchworker" -q bench -c 10
  drain -name go-reliable-c50 -- "$tmp/benchworker" -q bench -c 50
  drain -name go-basic-c10 -- "$tmp/benchworker" -q bench -c 10 --fetch basic
  drain -name ruby7-c10 -dialect 7 -dir bench/ruby -- "$PEERS" sidekiq 7 -r ./jobs.rb -q bench -c 10
  drain -name ruby6-c10 -dialect 6 -dir bench/ruby -- "$PEERS" sidekiq 6 -r ./jobs.rb -q bench -c 10
done

# 3. Redis ceiling for the commands one job costs. 50 clients, as many
# connections as a -c 50 worker; 200-byte values, about one job's JSON.
log "redis-benchmark"
redis-cli -p "$port" flushall >/dev/null
redis-cli -p "$port" eval "for i=1,1000 do redis.call('LPUSH', KEYS[1], string.rep('x', 200)) end
  for i=1,10 do redis.call('LPUSH', KEYS[2], string.rep('y', 200)) end" 2 bench:l bench:inflight >/dev/null
# A copy of the fetch script of sidekiq/internal/rdb (fetchBulkScript with
# its fetchPrelude, the one used with one queue or strict order;
# acknowledgements are plain LREMs pipelined ahead of it) called for one
# job with reliable fetch, rotating one list onto itself so it never
# empties.
sha=$(redis-cli -p "$port" script load "local n = tonumber(ARGV[1])
local reliable = #KEYS > n
local out = {}
local want = tonumber(ARGV[2])
for i in string.gmatch(ARGV[3], '%d+') do
  if want <= 0 then break end
  local q = tonumber(i)
  local oldestFirst = {}
  if reliable then
    local jobs = redis.call('LRANGE', KEYS[q], -want, -1)
    if #jobs > 0 then
      redis.call('LTRIM', KEYS[q], 0, -#jobs - 1)
      for x = #jobs, 1, -1 do
        oldestFirst[#oldestFirst + 1] = jobs[x]
      end
      redis.call('LPUSH', KEYS[n + q], unpack(oldestFirst))
    end
  else
    oldestFirst = redis.call('RPOP', KEYS[q], want) or {}
  end
  for _, v in ipairs(oldestFirst) do
    out[#out + 1] = q
    out[#out + 1] = v
  end
  want = want - #oldestFirst
end
return out")
rb() { # name, pipeline, requests, command...
  local name=$1 p=$2 n=$3; shift 3
  local rps
  rps=$(redis-benchmark -p "$port" -c 50 -n "$n" -d 200 -P "$p" -q --csv "$@" | tail -n +2 | head -1 | cut -d, -f2 | tr -d '"')
  echo "RESULT redis name=$name run=$run rps=$rps" | tee -a "$RAW"
}
for run in $(seq "$RUNS"); do
  redis-cli -p "$port" del mylist >/dev/null
  rb lpush-P1 1 50000 -t lpush
  rb rpop-P1 1 50000 -t rpop
  rb lpush-P100 100 500000 -t lpush
  rb rpop-P100 100 500000 -t rpop
  rb evalsha-fetch-P1 1 50000 EVALSHA "$sha" 2 bench:l bench:l 1 1 1
  rb evalsha-fetch-P100 100 500000 EVALSHA "$sha" 2 bench:l bench:l 1 1 1
  rb lmove-P1 1 50000 LMOVE bench:l bench:l RIGHT LEFT
  rb lrem-P1 1 50000 LREM bench:inflight 1 absent
  rb lrem-P100 100 500000 LREM bench:inflight 1 absent
done
echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$RAW" >&2

grep '^# ' "$RAW" | grep -v '^# drain\|^# bulk\|^# redis-bench' > "$SUMMARY"
echo >> "$SUMMARY"
"$tmp/enginebench" report < "$RAW" >> "$SUMMARY"
cat "$SUMMARY"
echo "raw: $RAW  summary: $SUMMARY" >&2
