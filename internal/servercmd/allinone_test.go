package servercmd

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/internal/e2etest"
)

// freeAddr is a loopback address with a port nothing listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// classRuns sums the processed counts of the job classes ending in suffix
// over the per-minute execution metrics (j|YYMMDD|H:MM; the ten-minute
// j|YYMMDD|H:M buckets repeat them).
func classRuns(t *testing.T, c redis.Conn, suffix string) int64 {
	t.Helper()
	keys, err := redis.Strings(c.Do("KEYS", "j|*"))
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, k := range keys {
		if i := strings.LastIndex(k, ":"); i < 0 || len(k)-i-1 != 2 {
			continue
		}
		m, err := redis.Int64Map(c.Do("HGETALL", k))
		if err != nil {
			t.Fatal(err)
		}
		for f, v := range m {
			if strings.HasSuffix(f, suffix+"|p") {
				n += v
			}
		}
	}
	return n
}

// `make run`'s server (embedded Redis, workers in this process) runs each
// row job of a 5,000-row upload exactly once, and no job twice, while a
// second run's token worker starts beside it:
// its report worker and token worker share a pid, and neither takes the
// other for a gone process (which cleared it from processes and pushed its
// running jobs back). processes, sampled through the run, never loses a
// live worker.
func TestAllInOneRunsEachRowJobOnce(t *testing.T) {
	const rows = 5000
	redisAddr := freeAddr(t)
	srv := e2etest.Start(t, Run, map[string]string{"DATA_DIR": t.TempDir(), "SUPERVISE_INTERVAL": "1s"},
		"-embedded-redis", redisAddr)
	pool := &redis.Pool{Dial: func() (redis.Conn, error) { return redis.Dial("tcp", redisAddr) }, MaxIdle: 2}
	defer pool.Close()

	// Sample processes until the run ends: an identity missing from a
	// sample between two that have it was cleared while it lived.
	var (
		mu      sync.Mutex
		samples [][]string
	)
	sampling, stopSampling := context.WithCancel(context.Background())
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		c := pool.Get()
		defer c.Close()
		for sampling.Err() == nil {
			if ids, err := redis.Strings(c.Do("SMEMBERS", "processes")); err == nil {
				mu.Lock()
				samples = append(samples, ids)
				mu.Unlock()
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()

	// A second run's token worker starts while the first run's rows are in
	// flight: its recoverer's first pass, at once, looks at them.
	sub := e2etest.Submit(t, srv.URL, e2etest.CSV(rows), "xlsx")
	deadline := time.Now().Add(2 * time.Minute)
	for e2etest.GetStatus(t, srv.URL, sub.Token).DoneCount < rows/10 {
		if time.Now().After(deadline) {
			t.Fatal("the first run made no progress")
		}
		time.Sleep(20 * time.Millisecond)
	}
	const small = 20
	sub2 := e2etest.Submit(t, srv.URL, e2etest.CSV(small), "text")
	if st := e2etest.WaitEnded(t, srv.URL, sub2.Token, 5*time.Minute); st.State != "completed" || st.DoneCount != small {
		t.Fatalf("second run: %+v", st)
	}
	st := e2etest.WaitEnded(t, srv.URL, sub.Token, 5*time.Minute)
	stopSampling()
	<-sampled
	if st.State != "completed" || st.DoneCount != rows {
		t.Fatalf("run: %+v", st)
	}
	if files := e2etest.ReadZip(t, e2etest.Download(t, srv.URL, sub.Token)); len(files) != rows+1 {
		t.Errorf("ZIP has %d entries, want %d rows and the manifest", len(files), rows)
	}

	// The token worker stops once the report is done and writes its last
	// metrics as it stops; the report worker flushes at its next beat.
	c := pool.Get()
	defer c.Close()
	deadline = time.Now().Add(90 * time.Second)
	for classRuns(t, c, "ProcessCsvRowJob") < rows+small || classRuns(t, c, "SplitCsvJob") < 1 || tokenWorkerRuns(t, c) {
		if time.Now().After(deadline) {
			t.Fatalf("metrics: %d row jobs, %d splits; token worker still registered: %v",
				classRuns(t, c, "ProcessCsvRowJob"), classRuns(t, c, "SplitCsvJob"), tokenWorkerRuns(t, c))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := classRuns(t, c, "ProcessCsvRowJob"); n != rows+small {
		t.Errorf("%d row jobs ran for %d rows", n, rows+small)
	}
	if n := classRuns(t, c, "SplitCsvJob"); n != 2 {
		t.Errorf("SplitCsvJob ran %d times", n)
	}
	// The other jobs are logged one by one: none ran twice (several
	// FinalizeReportJobs may be pushed; each runs once).
	ran := map[string]int{}
	for _, line := range strings.Split(srv.Stderr.String(), "\n") {
		if !strings.Contains(line, " msg=done ") {
			continue
		}
		if _, rest, ok := strings.Cut(line, " jid="); ok {
			jid, _, _ := strings.Cut(rest, " ")
			if ran[jid]++; ran[jid] == 2 {
				t.Errorf("job %s ran twice: %s", jid, line)
			}
		}
	}

	mu.Lock()
	defer mu.Unlock()
	if len(samples) < 5 {
		t.Errorf("only %d samples of processes", len(samples))
	}
	first, last := map[string]int{}, map[string]int{}
	for i, ids := range samples {
		for _, id := range ids {
			if _, ok := first[id]; !ok {
				first[id] = i
			}
			last[id] = i
		}
	}
	for id := range first {
		for i := first[id]; i <= last[id]; i++ {
			if !contains(samples[i], id) {
				t.Errorf("%s left processes at sample %d of %d while it lived (back at %d)", id, i, len(samples), last[id])
				break
			}
		}
	}
	if log := srv.Stderr.String(); strings.Contains(log, "a process of this host is gone") {
		t.Errorf("a worker of this process was taken for gone:\n%s", log)
	}
}

// tokenWorkerRuns tells whether a process serving a report-<hex> queue is
// registered.
func tokenWorkerRuns(t *testing.T, c redis.Conn) bool {
	t.Helper()
	ids, err := redis.Strings(c.Do("SMEMBERS", "processes"))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		info, _ := redis.String(c.Do("HGET", id, "info"))
		if strings.Contains(info, `"report-`) {
			return true
		}
	}
	return false
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}
