package jobs_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/internal/redistest"
	"github.com/pallarel/pallarel/jobs"
	"github.com/pallarel/pallarel/launcher"
	"github.com/pallarel/pallarel/ledger"
	"github.com/pallarel/pallarel/models"
	"github.com/pallarel/pallarel/render"
	"github.com/pallarel/pallarel/sidekiq"
)

// evictingEnv is an env on a redis-server of its own whose maxmemory
// policy evicts keys that have an expiry (volatile-ttl), so a test can
// make Redis itself evict the keys it names (evict).
func evictingEnv(t *testing.T, o envOptions) (*env, *redistest.Node) {
	t.Helper()
	node := redistest.NewNode(t, "--maxmemory-policy", "volatile-ttl")
	pool := redistest.NewPool(node.Addr, 0)
	t.Cleanup(func() { pool.Close() })
	o.redis = &redistest.DB{Addr: node.Addr, Pool: pool}
	return newEnvWith(t, o), node
}

// evict has Redis evict keys under memory pressure, as a full ElastiCache
// node with a volatile-* or allkeys-* policy does: they get an expiry, and
// maxmemory drops below what is used, then back. Other keys with an expiry
// (the processes' heartbeats) go too; writes in between get OOM errors.
// The test fails unless the keys were evicted (the fault landed).
func evict(t *testing.T, node *redistest.Node, keys ...string) {
	t.Helper()
	before, _ := strconv.Atoi(node.Info("evicted_keys"))
	for _, k := range keys {
		node.Do("PEXPIRE", k, 86_400_000)
	}
	node.Do("CONFIG", "SET", "maxmemory", "1")
	node.Do("CONFIG", "SET", "maxmemory", "0")
	after, _ := strconv.Atoi(node.Info("evicted_keys"))
	for _, k := range keys {
		if n, _ := redis.Int(node.Do("EXISTS", k), nil); n != 0 {
			t.Fatalf("%s not evicted (evicted_keys %d → %d)", k, before, after)
		}
	}
	if after < before+len(keys) {
		t.Fatalf("evicted_keys %d → %d, want at least %d more", before, after, len(keys))
	}
}

// Redis evicts Sidekiq's "queues" set and the run's queue after its split
// ended: to the supervisor the queue looks deleted from the dashboard
// (unlisted, its rows gone at once), which cancelled the run. An eviction
// is data loss: the queue is listed again, the rows are pushed again, and
// the run completes with every row once.
func TestEvictedQueueIsNoCancel(t *testing.T) {
	t.Parallel()
	e, node := evictingEnv(t, envOptions{launch: func(context.Context, launcher.Request) error { return nil }})
	const rows = 30
	e, id, token := splitWithoutWorkerIn(t, e, rows)
	queue := e.queue(token)
	ctx := context.Background()
	if err := e.pipeline.Supervise(ctx); err != nil {
		t.Fatal(err)
	}
	evict(t, node, "queues", "queue:"+queue)
	for pass := 0; pass < 4; pass++ {
		if err := e.pipeline.Supervise(ctx); err != nil {
			t.Logf("supervise: %v", err)
		}
	}
	if st := e.status(token); st.RunState() == models.RunCancelled {
		t.Fatalf("an eviction cancelled the run: %q", st.StateReason)
	}
	if ok, _ := redis.Bool(e.db.Do(t, "SISMEMBER", "queues", queue), nil); !ok {
		t.Fatalf("the queue is not listed again after the eviction")
	}
	if n, _ := redis.Int(e.db.Do(t, "LLEN", "queue:"+queue), nil); n < rows {
		t.Fatalf("queue holds %d jobs after the supervisor's passes, want the %d rows pushed again", n, rows)
	}
	e.runWorker(queue, []sidekiq.QueueWeight{{Name: queue}}, 4)
	waitFor(t, 30*time.Second, "the run completed", func() bool {
		if err := e.pipeline.Supervise(ctx); err != nil {
			t.Logf("supervise: %v", err)
		}
		rep, _ := e.models.ReportByID(ctx, id)
		return rep.Status == models.ReportCompleted
	})
	checkEveryRowDone(t, e, id, rows)
}

// Redis evicts the "queues" set mid-split, while the feeder waits for its
// window to drain: the feeder, finding its queue unlisted with rows
// unrecorded, took it for "Delete queue" and cancelled the run.
func TestEvictedQueuesSetMidSplitIsNoCancel(t *testing.T) {
	t.Parallel()
	const rows = 200
	e, node := evictingEnv(t, envOptions{
		launch: func(context.Context, launcher.Request) error { return nil },
		deps:   func(d *jobs.Deps) { d.SplitWindow, d.BatchSize = 20, 5 },
	})
	var b strings.Builder
	b.WriteString("id,name\n")
	for i := 1; i <= rows; i++ {
		fmt.Fprintf(&b, "E-%04d,n%d\n", i, i)
	}
	id := e.newReport(models.ReportTypeXLSX)
	e.split(b.String(), "text", id)
	var token string
	waitFor(t, 20*time.Second, "the split mid-way, its window full", func() bool {
		rep, err := e.models.ReportByID(context.Background(), id)
		if err != nil || rep.Token == "" {
			return false
		}
		token = rep.Token
		n, _ := redis.Int(e.db.Do(t, "LLEN", "queue:"+e.queue(token)), nil)
		return n >= 20
	})
	queue := e.queue(token)
	evict(t, node, "queues")
	// The feeder polls its window every 50 ms at most.
	time.Sleep(500 * time.Millisecond)
	if st := e.status(token); st.Ended() {
		t.Fatalf("an eviction ended the run: %s %q", st.RunState(), st.StateReason)
	}
	e.runWorker(queue, []sidekiq.QueueWeight{{Name: queue}}, 4)
	rep := e.completed(id, 60*time.Second)
	if rep.Status != models.ReportCompleted {
		t.Fatalf("report %+v", rep)
	}
	checkEveryRowDone(t, e, id, rows)
}

// checkEveryRowDone checks the report's manifest lists rows 1..rows done.
func checkEveryRowDone(t *testing.T, e *env, id int64, rows int) {
	t.Helper()
	rep, err := e.models.ReportByID(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	got := manifestRows(t, e.readZip(rep.File))
	if len(got) != rows {
		t.Fatalf("manifest has %d rows, want %d", len(got), rows)
	}
	for n := 1; n <= rows; n++ {
		if got[n][1] != "done" {
			t.Errorf("row %d: %v", n, got[n])
		}
	}
}

// Redis evicts the run's results mid-rows (its row ledger: recorded bits,
// count, packs, errors), the queue staying: the rows recorded before are
// run again from the stored upload, and the run completes with every row
// once in its ZIP and its counts not past the row count.
func TestEvictedLedgerMidRows(t *testing.T) {
	t.Parallel()
	const rows = 40
	gate := &gateRenderer{free: 10, open: make(chan struct{})}
	e, node := evictingEnv(t, envOptions{renderers: []render.Renderer{gate}, workers: 3, timeout: time.Second})
	id := e.newReport(models.ReportTypePDF)
	var b strings.Builder
	b.WriteString("id,v\n")
	for i := 1; i <= rows; i++ {
		fmt.Fprintf(&b, "r%d,%d\n", i, i)
	}
	e.split(b.String(), "pdf", id)
	var token string
	waitFor(t, 20*time.Second, "rows under way", func() bool {
		rep, err := e.models.ReportByID(context.Background(), id)
		if err != nil || rep.Token == "" {
			return false
		}
		token = rep.Token
		return e.ledgerCount(token) >= 5
	})
	var present []string
	for _, k := range ledger.Keys(token) {
		if n, _ := redis.Int(node.Do("EXISTS", k), nil); n == 1 {
			present = append(present, k)
		}
	}
	evict(t, node, present...)
	close(gate.open)
	ctx := context.Background()
	waitFor(t, 60*time.Second, "the run completed", func() bool {
		if err := e.pipeline.Supervise(ctx); err != nil {
			t.Logf("supervise: %v", err)
		}
		if st := e.status(token); st.RunState() == models.RunCancelled || st.RunState() == models.RunFailed {
			t.Fatalf("the eviction ended the run: %s %q", st.RunState(), st.StateReason)
		}
		rep, _ := e.models.ReportByID(ctx, id)
		return rep.Status == models.ReportCompleted
	})
	checkEveryRowDone(t, e, id, rows)
	if st := e.status(token); st.DoneCount+st.FailedCount > rows {
		t.Errorf("done_count %d + failed_count %d for %d rows", st.DoneCount, st.FailedCount, rows)
	}
}
