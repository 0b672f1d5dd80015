#!/usr/bin/env bash
# Text-row benchmark (issue 21 item 2): where a text row's CPU goes, by
# process (token worker, report worker, server, redis-server: utime+stime
# from /proc, from the upload to the download, so without the processes'
# start-up; idle, they use ~0: pipelinebench e2e -idle), with the Redis commands per row (INFO commandstats), against
# the engine's CPU per no-op job (enginebench drain, go reliable -c 10) in
# the same run; XLSX rows beside them. BEFORE (default ac6e720) and this
# tree side by side, in interleaved rounds; medians.
#
#   bash bench/textrow.sh
#   N=20000 N_XLSX=5000 ROUNDS=1 bash bench/textrow.sh     smoke run
#
# N       text rows per run, and no-op jobs per drain (default 100,000)
# N_XLSX  xlsx rows per run (default 20,000)
# ROUNDS  interleaved rounds (default 3)
# BEFORE  the commit to compare with (default ac6e720)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
N=${N:-100000}
N_XLSX=${N_XLSX:-20000}
ROUNDS=${ROUNDS:-3}
BEFORE=${BEFORE:-ac6e720}
OUT=${OUT:-bench/out}
command -v redis-server >/dev/null || { echo "needs redis-server (apt-get install redis-server redis-tools)" >&2; exit 1; }
mkdir -p "$OUT"
tmp=$(mktemp -d)
redis_pid=
trap '[ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT
mkdir -p "$tmp/before-src" "$tmp/before" "$tmp/after"
git archive "$BEFORE" | tar -x -C "$tmp/before-src"
# The harnesses (enginebench, pipelinebench) are this tree's on both sides;
# only the measured binaries (server, worker, benchworker) differ.
(cd "$tmp/before-src" && go build -o "$tmp/before/" ./cmd/server ./cmd/worker ./bench/cmd/benchworker)
go build -o "$tmp/after/" ./cmd/server ./cmd/worker ./bench/cmd/pipelinebench ./bench/cmd/benchworker ./bench/cmd/enginebench
stamp=$(date -u +%Y%m%dT%H%M%SZ)
RAW="$OUT/textrow-raw-$stamp.txt"
{
  echo "# date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "# command: N=$N N_XLSX=$N_XLSX ROUNDS=$ROUNDS BEFORE=$BEFORE bash bench/textrow.sh (after: $(git rev-parse --short HEAD)$(git diff --quiet || echo ' + uncommitted changes'))"
  echo "# nproc: $(nproc); memory: $(free -g | awk '/^Mem:/ {print $2 " GiB"}')"
  echo "# cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# $(go version)"
  echo "# $(redis-server --version)"
} | tee "$RAW" >&2
t_start=$(date +%s)
pb="$tmp/after/pipelinebench"
"$pb" gencsv -rows "$N" -out "$tmp/text.csv" >/dev/null
"$pb" gencsv -rows "$N_XLSX" -out "$tmp/xlsx.csv" >/dev/null
port=$("$tmp/after/enginebench" freeport)
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp" --logfile "$tmp/redis.log" &
redis_pid=$!
for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
URL="redis://127.0.0.1:$port/0"

for i in $(seq "$ROUNDS"); do
  for side in before after; do
    "$tmp/after/enginebench" drain -redis "$URL" -n "$N" -runs 1 -run "$i" -name "$side-noop" -- "$tmp/$side/benchworker" -q bench -c 10 | grep '^RESULT drain' | tee -a "$RAW"
    "$tmp/after/pipelinebench" e2e -bin "$tmp/$side" -csv "$tmp/text.csv" -rows "$N" -type text -workers 1 -name "$side-text" | tee -a "$RAW"
    "$tmp/after/pipelinebench" e2e -bin "$tmp/$side" -csv "$tmp/xlsx.csv" -rows "$N_XLSX" -type xlsx -workers 1 -name "$side-xlsx" | grep -E '^RESULT (e2e|rss|cmds|runcpu)' | tee -a "$RAW"
  done
done
echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$RAW" >&2
echo "# wall time: $(( $(date +%s) - t_start )) s" | tee -a "$RAW" >&2

awk '
function kv(s,   a, n, i, p) { delete F; n = split(s, a, " "); for (i = 1; i <= n; i++) { p = index(a[i], "="); if (p) F[substr(a[i], 1, p - 1)] = substr(a[i], p + 1) } }
function median(list,   a, n, i, j, t) { n = split(list, a, " "); if (n == 0) return 0; for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t } return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
/^RESULT drain/ { kv($0); k = F["name"]; w[k] = w[k] " " F["worker_us_per_job"]; r[k] = r[k] " " F["redis_us_per_job"]; j[k] = j[k] " " F["worker_us_per_job"] + F["redis_us_per_job"] }
/^RESULT e2e/ { kv($0); k = F["name"]; rows[k] = F["rows"]; rate[k] = rate[k] " " F["rate"]; cur[k] = ++runs[k] }
/^RESULT cmds/ { kv($0); k = F["name"]; cmds[k] = cmds[k] " " F["per_row"] }
/^RESULT cmd / { kv($0); k = F["name"]; c = F["cmd"]; if (k ~ /text/) { names[c] = 1; cmd[k, c] = cmd[k, c] " " F["per_row"] } }
/^RESULT runcpu/ { kv($0); k = F["name"]; p = F["proc"]; procs[p] = 1; n = runs[k] + 1; tot[k, n] += F["cpu_s"]; pc[k, p, n] += F["cpu_s"] }
END {
  for (k in runs) for (n = 1; n <= runs[k]; n++) { tcpu[k] = tcpu[k] " " tot[k, n] * 1e6 / rows[k]; for (p in procs) pcpu[k, p] = pcpu[k, p] " " pc[k, p, n] * 1e6 / rows[k] }
  print "| µs of CPU per row (medians) | text before | text after | xlsx before | xlsx after |"
  print "|---|---|---|---|---|"
  printf "| all processes | %.1f | %.1f | %.1f | %.1f |\n", median(tcpu["before-text"]), median(tcpu["after-text"]), median(tcpu["before-xlsx"]), median(tcpu["after-xlsx"])
  for (p in procs) printf "| … %s | %.1f | %.1f | %.1f | %.1f |\n", p, median(pcpu["before-text", p]), median(pcpu["after-text", p]), median(pcpu["before-xlsx", p]), median(pcpu["after-xlsx", p])
  printf "| rows/s | %.0f | %.0f | %.0f | %.0f |\n", median(rate["before-text"]), median(rate["after-text"]), median(rate["before-xlsx"]), median(rate["after-xlsx"])
  printf "| Redis commands per row | %.2f | %.2f | %.2f | %.2f |\n", median(cmds["before-text"]), median(cmds["after-text"]), median(cmds["before-xlsx"]), median(cmds["after-xlsx"])
  printf "| no-op job (engine drain, go reliable -c 10): worker + Redis µs | %.1f + %.1f | %.1f + %.1f | | |\n", median(w["before-noop"]), median(r["before-noop"]), median(w["after-noop"]), median(r["after-noop"])
  printf "| text row CPU / no-op job CPU | %.1f | %.1f | | |\n", median(tcpu["before-text"]) / median(j["before-noop"]), median(tcpu["after-text"]) / median(j["after-noop"])
  printf "| xlsx rows/s / text rows/s | | | %.2f | %.2f |\n", median(rate["before-xlsx"]) / median(rate["before-text"]), median(rate["after-xlsx"]) / median(rate["after-text"])
  print ""
  print "| Redis commands per text row | before | after |"
  print "|---|---|---|"
  for (c in names) { b = median(cmd["before-text", c]); a = median(cmd["after-text", c]); if (b >= 0.001 || a >= 0.001) printf "| %s | %.4f | %.4f |\n", c, b, a }
}' "$RAW" | tee "$OUT/textrow-summary-$stamp.md"
echo "raw: $RAW  summary: $OUT/textrow-summary-$stamp.md" >&2
