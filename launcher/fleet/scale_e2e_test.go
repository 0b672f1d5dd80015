package fleet_test

import (
	"strings"
	"testing"
	"time"

	"github.com/pallarel/pallarel/sidekiq"
)

// scaleRun submits one run of rows and checks the run itself grew its
// workers while its estimate missed the target and stopped them as it
// drained, before it completed; then its ZIP, row by row.
func scaleRun(t *testing.T, c *cluster, rows int) {
	t.Helper()
	s := c.sample(20 * time.Millisecond)
	token, id := c.submit(rows, "sleep")
	var queue string
	api := sidekiq.NewAPI(c.rdb.Pool, sidekiq.Dialect8)
	seen := map[string]bool{} // Sidekiq processes on the run's queue, as the Web UI lists them
	deadline := time.Now().Add(4 * time.Minute)
	for !c.completed(id) {
		if time.Now().After(deadline) {
			t.Fatal("the run did not complete in 4 minutes")
		}
		if queue == "" {
			if st, err := c.db.StatusByToken(t.Context(), token); err == nil {
				queue = st.QueueName
			}
		}
		if ps, err := api.Processes(t.Context()); err == nil && queue != "" {
			for _, p := range ps {
				if len(p.Queues) == 1 && p.Queues[0] == queue {
					seen[p.Identity] = true
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	completedAt := time.Now()
	s.end()
	st, err := c.db.StatusByToken(t.Context(), token)
	if err != nil {
		t.Fatal(err)
	}
	if queue != st.QueueName {
		t.Fatalf("queue %q, the run's %q", queue, st.QueueName)
	}
	peak, peakAt := 0, time.Time{}
	for _, sm := range s.samples {
		if n := sm.byQueue[queue]; n > peak {
			peak, peakAt = n, sm.at
		}
	}
	if peak < 2 {
		t.Fatalf("at most %d workers on %s: the run never launched more", peak, queue)
	}
	if len(seen) < peak {
		t.Fatalf("%d Sidekiq processes on %s in the processes set (what the Web UI shows), %d workers ran", len(seen), queue, peak)
	}
	shrunk := false
	for _, sm := range s.samples {
		if sm.at.After(peakAt) && sm.at.Before(completedAt) && sm.byQueue[queue] >= 1 && sm.byQueue[queue] < peak {
			shrunk = true
		}
	}
	if !shrunk {
		t.Fatalf("the run's workers peaked at %d and never went down before it completed", peak)
	}
	t.Logf("peak %d workers; run took %s", peak, completedAt.Sub(st.CreatedAt).Round(100*time.Millisecond))
	c.checkZip(token, rows)
	// The finalizer ran once, in one of the run's workers.
	if n := strings.Count(c.logs.String(), `msg="report finished"`); n != 1 {
		t.Fatalf("the finalizer finished %d times, want once", n)
	}
}

// With RUN_TARGET_DURATION and local worker processes: a run that one
// worker would finish late gets more, and loses them as it drains. Its
// split feeds 500 rows at a time, so its size is an estimate from the bytes
// read until the last window.
func TestRunScalesOutWithLocalWorkers(t *testing.T) {
	t.Parallel()
	c := newCluster(t, map[string]string{
		"SPLIT_WINDOW":          "500",
		"RUN_TARGET_DURATION":   "15s",
		"MAX_WORKERS_PER_RUN":   "4",
		"SLEEPWORKER_ROW_SLEEP": "20ms",
	})
	c.env["LOCAL_WORKER_COMMAND"] = c.bin + " -q {queue} -c 2 --idle-timeout 1m"
	c.startReportWorker()
	scaleRun(t, c, 3000)
}
