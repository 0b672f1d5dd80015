package jobs_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/launcher"
	"github.com/pallarel/pallarel/models"
	"github.com/pallarel/pallarel/sidekiq"
)

// splitWithoutWorker runs a split whose token worker is not started, and
// waits until every row and the finalizer are queued.
func splitWithoutWorker(t *testing.T, rows int) (*env, int64, string) {
	t.Helper()
	return splitWithoutWorkerIn(t, newEnvWith(t, envOptions{launch: func(context.Context, launcher.Request) error { return nil }}), rows)
}

// splitWithoutWorkerIn is splitWithoutWorker in e, whose launcher starts
// no worker.
func splitWithoutWorkerIn(t *testing.T, e *env, rows int) (*env, int64, string) {
	t.Helper()
	var b strings.Builder
	b.WriteString("id,name\n")
	for i := 1; i <= rows; i++ {
		fmt.Fprintf(&b, "S-%04d,n%d\n", i, i)
	}
	id := e.newReport(models.ReportTypeXLSX)
	e.split(b.String(), "text", id)
	var token string
	waitFor(t, 20*time.Second, "split done", func() bool {
		rep, err := e.models.ReportByID(context.Background(), id)
		if err != nil || rep.Token == "" {
			return false
		}
		token = rep.Token
		n, _ := redis.Int(e.db.Do(t, "LLEN", "queue:"+e.queue(token)), nil)
		return n == rows+1
	})
	return e, id, token
}

// dropQueued removes from queue the jobs whose row number (0 for the
// finalizer) drop accepts, and returns how many it removed.
func dropQueued(t *testing.T, e *env, queue string, drop func(row int) bool) int {
	t.Helper()
	raw, _ := redis.ByteSlices(e.db.Do(t, "LRANGE", "queue:"+queue, 0, -1), nil)
	dropped := 0
	for _, r := range raw {
		j, err := sidekiq.ParseJob(r)
		if err != nil {
			t.Fatal(err)
		}
		var n int
		_, _ = j.Field("pallarel_row", &n)
		if drop(n) {
			e.db.Do(t, "LREM", "queue:"+queue, 1, r)
			dropped++
		}
	}
	return dropped
}

// Rows and a finalizer that vanished from Redis (deleted one by one, lost
// in a partial restore) are pushed again after two supervisor passes, and
// the run completes with every row once.
func TestSupervisorPushesLostRowsAndFinalizerAgain(t *testing.T) {
	const rows = 60
	e, id, token := splitWithoutWorker(t, rows)
	queue := e.queue(token)
	ctx := context.Background()
	// Every 7th row, and the finalizer (row 0).
	lost := dropQueued(t, e, queue, func(n int) bool { return n%7 == 0 })
	for pass := range 2 {
		if err := e.pipeline.Supervise(ctx); err != nil {
			t.Fatalf("pass %d: %v", pass, err)
		}
	}
	if n, _ := redis.Int(e.db.Do(t, "LLEN", "queue:"+queue), nil); n != rows+1 {
		t.Fatalf("queue holds %d jobs after the supervisor, want %d rows and a finalizer (%d were lost)", n, rows+1, lost)
	}
	e.runWorker(queue, []sidekiq.QueueWeight{{Name: queue}}, 4)
	rep := e.completed(id, 30*time.Second)
	files := e.readZip(rep.File)
	got := manifestRows(t, files)
	if len(got) != rows {
		t.Fatalf("manifest has %d rows, want %d", len(got), rows)
	}
	for n := 1; n <= rows; n++ {
		if got[n][1] != "done" {
			t.Errorf("row %d: %v", n, got[n])
		}
	}
}

// "Delete queue" on a dashboard ends the run as cancelled, with the reason,
// instead of leaving it processing for ever.
func TestSupervisorCancelsARunWhoseQueueWasDeleted(t *testing.T) {
	e, id, token := splitWithoutWorker(t, 20)
	queue := e.queue(token)
	e.db.Do(t, "UNLINK", "queue:"+queue)
	e.db.Do(t, "SREM", "queues", queue)
	if err := e.pipeline.Supervise(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := e.status(token)
	if st.RunState() != models.RunCancelled || !strings.Contains(st.StateReason, "deleted") || !st.Ended() {
		t.Fatalf("status = %+v, want cancelled because the queue was deleted", st)
	}
	rep, err := e.models.ReportByID(context.Background(), id)
	if err != nil || rep.Status != models.ReportFailed || !strings.Contains(rep.ErrorMessage, "cancelled") {
		t.Fatalf("report = %+v, %v", rep, err)
	}
}

// A deleted queue listed again by a later push (the finalizer's scheduled
// copy, promoted by the poller) is still seen as deleted: every row that
// waited in it vanished at once.
func TestSupervisorCancelsADeletedQueueListedAgain(t *testing.T) {
	e, _, token := splitWithoutWorker(t, 20)
	queue := e.queue(token)
	ctx := context.Background()
	if err := e.pipeline.Supervise(ctx); err != nil {
		t.Fatal(err)
	}
	e.db.Do(t, "UNLINK", "queue:"+queue)
	e.db.Do(t, "SREM", "queues", queue)
	// Something pushes to the queue again before the next pass.
	e.db.Do(t, "SADD", "queues", queue)
	e.db.Do(t, "LPUSH", "queue:"+queue, `{"class":"Report::FinalizeReportJob","queue":"`+queue+`","jid":"f1","args":["/tmp/x","text",1,"`+token+`",10,43200,0]}`)
	if err := e.pipeline.Supervise(ctx); err != nil {
		t.Fatal(err)
	}
	if st := e.status(token); st.RunState() != models.RunCancelled {
		t.Fatalf("status = %+v, want cancelled", st)
	}
}

// A run under way across an upgrade from the 16-byte-slot ledger: its old
// ledger is dropped and the run rebuilt from the upload, so the rows the
// old version recorded run again and every row is in the ZIP once, done.
func TestSupervisorRebuildsARunWithTheOldLedger(t *testing.T) {
	const rows, ranBefore = 40, 10
	e, id, token := splitWithoutWorker(t, rows)
	queue := e.queue(token)
	ctx := context.Background()
	// What the older version left: rows 1..10 ran (gone from the queue),
	// recorded as 16-byte "done" slots, counted, their names kept.
	dropQueued(t, e, queue, func(n int) bool { return n >= 1 && n <= ranBefore })
	slots := make([]byte, 16*ranBefore)
	for i := range ranBefore {
		slots[16*i] = 1 // done
		slots[16*i+5] = byte(i + 1)
	}
	e.db.Do(t, "SET", "pallarel:ledger:"+token, slots)
	e.db.Do(t, "SET", "pallarel:count:"+token, ranBefore)
	e.db.Do(t, "HSET", "pallarel:names:"+token, 1, "S-0001.xlsx")
	for pass := range 3 {
		if err := e.pipeline.Supervise(ctx); err != nil {
			t.Fatalf("pass %d: %v", pass, err)
		}
	}
	if n := e.redisInt("EXISTS", "pallarel:ledger:"+token, "pallarel:names:"+token); n != 0 {
		t.Fatalf("%d keys of the old ledger left", n)
	}
	e.runWorker(queue, []sidekiq.QueueWeight{{Name: queue}}, 4)
	rep := e.completed(id, 30*time.Second)
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
