#!/usr/bin/env bash
# Scale-out benchmark (issue 21 item 3): one run of ROWS rows, each taking a
# fixed SLEEP (a sleeping renderer, so cores do not limit it), whose token
# workers the run itself launches (the `report` worker's supervisor through
# the local launcher, RUN_TARGET_DURATION set so N workers are needed), for
# each count in WORKERS; rows/s against the ideal and the time to the
# target. See bench/RESULTS.md.
#
#   bash bench/scale.sh
#   ROWS=20000 WORKERS=1,2 bash bench/scale.sh      smoke run
#
# Needs: Go, redis-server (Debian redis-server).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
ROWS=${ROWS:-200000}
WORKERS=${WORKERS:-1,2,4,8}
CONC=${CONC:-10}
SLEEP=${SLEEP:-5ms}
command -v redis-server >/dev/null || { echo "needs redis-server (apt-get install redis-server)" >&2; exit 1; }
tmp=$(mktemp -d)
redis_pid=
trap '[ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT
go build -o "$tmp/" ./internal/sleepworker ./bench/cmd/scalebench
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$tmp" --logfile "$tmp/redis.log" &
redis_pid=$!
for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(redis-server --version | cut -d' ' -f3), rows $ROWS, -c $CONC, $SLEEP a row"
"$tmp/scalebench" -worker-bin "$tmp/sleepworker" -redis-url "redis://127.0.0.1:$port/0" -rows "$ROWS" -workers "$WORKERS" -c "$CONC" -sleep "$SLEEP"
