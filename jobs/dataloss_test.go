package jobs_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/jobs"
	"github.com/pallarel/pallarel/launcher"
	"github.com/pallarel/pallarel/models"
	"github.com/pallarel/pallarel/render"
	"github.com/pallarel/pallarel/sidekiq"
)

// FLUSHDB mid-split (as after a failover to an empty replica) is no cancel:
// the queue went with the run's own keys, so the split starts again from
// the upload, and the run completes with every row once. A person's
// "Delete queue" mid-split, the run's keys staying, still cancels.
func TestFlushMidSplitIsNoCancel(t *testing.T) {
	t.Parallel()
	for _, flush := range []bool{true, false} {
		t.Run(fmt.Sprintf("flush=%v", flush), func(t *testing.T) {
			t.Parallel()
			const rows = 200
			e := newEnvWith(t, envOptions{
				launch: func(context.Context, launcher.Request) error { return nil },
				deps:   func(d *jobs.Deps) { d.SplitWindow, d.BatchSize = 20, 5 },
			})
			var b strings.Builder
			b.WriteString("id,name\n")
			for i := 1; i <= rows; i++ {
				fmt.Fprintf(&b, "F-%04d,n%d\n", i, i)
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
			if flush {
				e.db.Do(t, "FLUSHDB")
			} else {
				e.db.Do(t, "UNLINK", "queue:"+queue)
				e.db.Do(t, "SREM", "queues", queue)
			}
			if !flush {
				waitFor(t, 20*time.Second, "the cancel", func() bool { return e.status(token).RunState() == models.RunCancelled })
				return
			}
			// The feeder notices within its loop; a pass of the supervisor
			// feeds the run again.
			waitFor(t, 20*time.Second, "the split fed again", func() bool {
				if st := e.status(token); st.Ended() {
					t.Fatalf("the flush ended the run: %+v", st)
				}
				if err := e.pipeline.Supervise(context.Background()); err != nil {
					t.Logf("supervise: %v", err)
				}
				n, _ := redis.Int(e.db.Do(t, "LLEN", "queue:"+queue), nil)
				return n >= 20
			})
			e.runWorker(queue, []sidekiq.QueueWeight{{Name: queue}}, 4)
			rep := e.completed(id, 60*time.Second)
			got := manifestRows(t, e.readZip(rep.File))
			if len(got) != rows {
				t.Fatalf("manifest has %d rows, want %d", len(got), rows)
			}
			for n := 1; n <= rows; n++ {
				if got[n][1] != "done" {
					t.Errorf("row %d: %v", n, got[n])
				}
			}
		})
	}
}

// FLUSHDB mid-rows: the ledger, total and queue are gone while a worker
// runs rows; the supervisor feeds the run again from the upload (no
// cancel), and the ZIP has every row once.
func TestFlushMidRowsIsNoCancel(t *testing.T) {
	t.Parallel()
	const rows = 40
	gate := &gateRenderer{free: 10, open: make(chan struct{})}
	e := newEnvWith(t, envOptions{renderers: []render.Renderer{gate}, workers: 3, timeout: time.Second})
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
	e.db.Do(t, "FLUSHDB")
	close(gate.open)
	deadline := time.Now().Add(60 * time.Second)
	for {
		if err := e.pipeline.Supervise(context.Background()); err != nil {
			t.Logf("supervise: %v", err)
		}
		rep, _ := e.models.ReportByID(context.Background(), id)
		if rep.Status == models.ReportCompleted {
			break
		}
		// A run being finalized has finalized_at and its state still
		// processing: only a failed or cancelled end is the flush's.
		if st := e.status(token); st.RunState() == models.RunCancelled || st.RunState() == models.RunFailed {
			t.Fatalf("the flush ended the run: %+v", st)
		}
		if time.Now().After(deadline) {
			t.Fatalf("not completed after the flush: %+v", e.status(token))
		}
		time.Sleep(200 * time.Millisecond)
	}
	rep := e.completed(id, time.Second)
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
