package jobs_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/launcher"
	"github.com/pallarel/pallarel/models"
	"github.com/pallarel/pallarel/router"
	"github.com/pallarel/pallarel/sidekiq"
	"github.com/pallarel/pallarel/storage"
)

// noWorker is a launcher that starts nothing: the token's jobs wait in its
// queue until the test runs a worker itself.
func noWorker(context.Context, launcher.Request) error { return nil }

func numberedCSV(prefix string, n int) string {
	var b strings.Builder
	b.WriteString("個別識別番号,保険者名,年度\n")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "%s%03d,保険者%d,%d\n", prefix, i, i, 2000+i)
	}
	return b.String()
}

// queued lists the jobs waiting in queue.
func (e *env) queued(queue string) []sidekiq.Entry {
	e.t.Helper()
	entries, err := e.api.QueueJobs(context.Background(), queue, 0, 10000)
	if err != nil {
		e.t.Fatal(err)
	}
	return entries
}

// splitDone waits until the report's split has pushed its finalizer(s) and
// returns the token.
func (e *env) splitDone(id int64, finalizers int) string {
	e.t.Helper()
	var token string
	waitFor(e.t, 20*time.Second, "split pushed the finalizer", func() bool {
		r, err := e.models.ReportByID(context.Background(), id)
		if err != nil || r.Token == "" {
			return false
		}
		token = r.Token
		n := 0
		for _, en := range e.queued(e.queue(token)) {
			if en.Job.HandlerClass() == contract.Finalize.Name {
				n++
			}
		}
		return n == finalizers
	})
	return token
}

// rowsQueued counts the row jobs waiting per row number.
func (e *env) rowsQueued(queue string) map[int]int {
	e.t.Helper()
	out := map[int]int{}
	for _, en := range e.queued(queue) {
		if en.Job.HandlerClass() == contract.Row.Name {
			var n int
			if _, err := en.Job.Field("pallarel_row", &n); err != nil || n == 0 {
				e.t.Fatalf("row job without its row number: %s", en.Raw)
			}
			out[n]++
		}
	}
	return out
}

func TestFinalizeCopiesRunOnce(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, envOptions{launch: noWorker})
	ctx := context.Background()
	const rows = 12
	id := e.newReport(models.ReportTypeXLSX)
	e.split(numberedCSV("F", rows), "text", id)
	token := e.splitDone(id, 1)
	queue := e.queue(token)
	// Take the split's finalizer out; run the rows to the end first.
	for _, en := range e.queued(queue) {
		if en.Job.HandlerClass() == contract.Finalize.Name {
			if ok, err := e.api.DeleteQueueJob(ctx, queue, en.Raw); err != nil || !ok {
				t.Fatalf("delete finalizer: %v %v", ok, err)
			}
		}
	}
	e.runWorker(queue, []sidekiq.QueueWeight{{Name: queue}}, 8)
	waitFor(t, 20*time.Second, "rows done", func() bool { return e.status(token).DoneCount == rows })

	// Five copies of the finalizer, pushed at once, run concurrently.
	copies := make([]*sidekiq.Job, 5)
	for i := range copies {
		j, err := sidekiq.NewJob(contract.Finalize.Name, "/tmp/reports/"+token, "text", id, token, 1, 3600, time.Now().Unix())
		if err != nil {
			t.Fatal(err)
		}
		j.Queue, j.Retry = queue, json.RawMessage("3")
		copies[i] = j
	}
	if _, err := e.client.PushBulk(ctx, copies); err != nil {
		t.Fatal(err)
	}
	rep := e.completed(id, 20*time.Second)
	waitFor(t, 20*time.Second, "every copy ran", func() bool {
		p, err := e.api.PendingFor(ctx, queue)
		return err == nil && p.Total() == 0
	})
	e.waitStopped(1, 20*time.Second)
	if n := e.completedMarks.Load(); n != 1 {
		t.Errorf("MarkReportCompleted ran %d times", n)
	}
	if n := e.stoppedCount(); n != 1 {
		t.Errorf("launcher Stop called %d times", n)
	}
	zips, err := e.store.List(ctx, "reports/")
	if err != nil || len(zips) != 1 || zips[0].Key != contract.ResultKey(token) {
		t.Fatalf("zips: %v %v", zips, err)
	}
	if m := manifestRows(t, e.readZip(rep.File)); len(m) != rows || rep.Count != rows {
		t.Fatalf("report %+v, manifest %d rows", rep, len(m))
	}
	if len(e.dead()) != 0 {
		t.Fatalf("dead jobs: %d", len(e.dead()))
	}
}

func TestRowJobTwiceCountedOnce(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, envOptions{launch: noWorker})
	const rows = 6
	id := e.newReport(models.ReportTypeXLSX)
	e.split(numberedCSV("D", rows), "text", id)
	token := e.splitDone(id, 1)
	queue := e.queue(token)
	// The same payload twice (a retry after the file was written, a
	// recovered in-flight job): push row 3 again.
	for _, en := range e.queued(queue) {
		var n int
		_, _ = en.Job.Field("pallarel_row", &n)
		if n == 3 {
			e.db.Do(t, "RPUSH", "queue:"+queue, en.Raw) // runs before the finalizer
		}
	}
	if got := e.rowsQueued(queue); got[3] != 2 {
		t.Fatalf("row 3 queued %d times", got[3])
	}
	e.runWorker(queue, []sidekiq.QueueWeight{{Name: queue}}, 4)
	rep := e.completed(id, 20*time.Second)
	files := e.readZip(rep.File)
	m := manifestRows(t, files)
	if rep.Count != rows || len(m) != rows || len(files) != rows+1 {
		t.Fatalf("report %+v, manifest %v, zip %v", rep, m, names(files))
	}
	if st := e.status(token); st.DoneCount != rows || st.TotalCount != rows || st.FailedCount != 0 {
		t.Fatalf("status: %+v", st)
	}
}

func TestSplitRerunPushesNoRowTwice(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, envOptions{launch: noWorker, batchSize: 10})
	const rows = 35
	csv := numberedCSV("R", rows)
	id := e.newReport(models.ReportTypeXLSX)
	e.split(csv, "text", id)
	token := e.splitDone(id, 1)
	queue := e.queue(token)

	// Run the same SplitCsvJob again after it finished: same token, no row
	// pushed again.
	e.split(csv, "text", id)
	if got := e.splitDone(id, 2); got != token {
		t.Fatalf("re-run took token %s, first %s", got, token)
	}
	got := e.rowsQueued(queue)
	if len(got) != rows {
		t.Fatalf("%d rows queued", len(got))
	}
	for n, c := range got {
		if c != 1 {
			t.Errorf("row %d queued %d times", n, c)
		}
	}

	// A crash after pushing rows 21-30 but before recording it: the run
	// recorded rows 1-20 as pushed, rows 31-35 and the finalizer never went.
	for _, en := range e.queued(queue) {
		var n int
		_, _ = en.Job.Field("pallarel_row", &n)
		if n > 30 || en.Job.HandlerClass() == contract.Finalize.Name {
			if _, err := e.api.DeleteQueueJob(context.Background(), queue, en.Raw); err != nil {
				t.Fatal(err)
			}
		}
	}
	e.db.Do(t, "SET", "pallarel:split:"+token, 20)
	e.split(csv, "text", id)
	e.splitDone(id, 1)
	got = e.rowsQueued(queue)
	for n := 1; n <= rows; n++ {
		want := 1
		if n > 20 && n <= 30 {
			want = 2 // the one batch in flight at the crash
		}
		if got[n] != want {
			t.Errorf("row %d queued %d times, want %d", n, got[n], want)
		}
	}

	e.runWorker(queue, []sidekiq.QueueWeight{{Name: queue}}, 4)
	rep := e.completed(id, 20*time.Second)
	if rep.Token != token || rep.Count != rows {
		t.Fatalf("report: %+v", rep)
	}
	if m := manifestRows(t, e.readZip(rep.File)); len(m) != rows {
		t.Fatalf("manifest %d rows", len(m))
	}
	if st := e.status(token); st.DoneCount != rows || st.TotalCount != rows {
		t.Fatalf("status: %+v", st)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.started) != 1 {
		t.Errorf("workers launched %d times: %v", len(e.started), e.started)
	}
}

// The idle-task monitor stops the worker of a run that has no work left
// but was never finalized (its finalizer died), once it has been quiet.
func TestIdleTaskMonitorStopsForgottenWorkers(t *testing.T) {
	store, err := storage.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, store)
	ctx := context.Background()
	token := router.NewToken()
	q := router.QueueName(token)
	if _, err := e.models.CreateStatus(ctx, token, q, 10); err != nil {
		t.Fatal(err)
	}
	if err := e.models.RecordWorker(ctx, token, "task-forgotten", time.Now()); err != nil {
		t.Fatal(err)
	}
	// Busy token: work is waiting, so it must be left alone even when old.
	busy := router.NewToken()
	bq := router.QueueName(busy)
	e.models.CreateStatus(ctx, busy, bq, 10)
	e.models.RecordWorker(ctx, busy, "task-busy", time.Now())
	j, _ := sidekiq.NewJob("Report::ProcessCsvRowJob", map[string]string{"a": "1"}, "text", 1, "/tmp", busy)
	j.Queue = bq
	e.db.Do(t, "LPUSH", "queue:"+bq, mustEncode(t, j))

	// Not quiet long enough yet: nothing stopped.
	if n, err := e.pipeline.Monitors().StopIdleWorkers(ctx); err != nil || n != 0 {
		t.Fatalf("fresh run stopped: %d %v", n, err)
	}
	e.models.DB.Exec("UPDATE csv_processing_statuses SET updated_at = ?", time.Now().Add(-time.Hour))
	n, err := e.pipeline.Monitors().StopIdleWorkers(ctx)
	if err != nil || n != 1 {
		t.Fatalf("stopped %d, %v; want 1", n, err)
	}
	e.mu.Lock()
	stopped := append([]string(nil), e.stopped...)
	e.mu.Unlock()
	if len(stopped) != 1 || stopped[0] != "task-forgotten" {
		t.Fatalf("stopped %v", stopped)
	}
	if n, _ := e.pipeline.Monitors().StopIdleWorkers(ctx); n != 0 {
		t.Fatal("stopped the same worker twice")
	}
}

func mustEncode(t *testing.T, j *sidekiq.Job) []byte {
	t.Helper()
	if j.JID == "" {
		j.JID = sidekiq.NewJID()
	}
	b, err := j.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}
