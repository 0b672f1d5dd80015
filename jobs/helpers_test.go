package jobs_test

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/jobs"
	"github.com/pallarel/pallarel/models"
	"github.com/pallarel/pallarel/router"
	"github.com/pallarel/pallarel/sidekiq"
	"github.com/pallarel/pallarel/sidekiq/sidekiqtest"
)

// newReport creates a pending client_reports row, as the Rails controller
// does before it enqueues SplitCsvJob.
func (e *env) newReport(typ models.ReportType) int64 {
	e.t.Helper()
	rep := models.ClientReport{ReportType: typ}
	if err := e.models.CreateReport(context.Background(), &rep); err != nil {
		e.t.Fatal(err)
	}
	return rep.ID
}

// split enqueues SplitCsvJob on the report queue; src is the CSV text or a
// contract.SourceRef.
func (e *env) split(src any, typ string, reportID int64) string {
	e.t.Helper()
	j, err := jobs.NewSplitJob(sidekiq.Dialect8, src, typ, reportID)
	if err != nil {
		e.t.Fatal(err)
	}
	jid, err := e.client.Push(context.Background(), j)
	if err != nil {
		e.t.Fatal(err)
	}
	return jid
}

// completed waits for the report and fails unless it completed.
func (e *env) completed(id int64, d time.Duration) models.ClientReport {
	e.t.Helper()
	r := e.waitReport(id, d)
	if r.Status != models.ReportCompleted {
		e.t.Fatalf("report %d: status %v, error %q", id, r.Status, r.ErrorMessage)
	}
	return r
}

// waitFor is sidekiqtest.WaitFor: cond polled until it holds, the test
// failed after d.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	sidekiqtest.WaitFor(t, d, what, cond)
}

// dead returns the jobs in the dead set.
func (e *env) dead() []*sidekiq.Job {
	e.t.Helper()
	entries, err := e.api.SetEntries(context.Background(), sidekiq.DeadSet, 0, 1000)
	if err != nil {
		e.t.Fatal(err)
	}
	out := make([]*sidekiq.Job, 0, len(entries))
	for _, en := range entries {
		if en.Job == nil {
			e.t.Fatalf("dead entry is not a job: %v %q", en.Err, en.Raw)
		}
		out = append(out, en.Job)
	}
	return out
}

// waitDead waits for a job of class in the dead set and returns it.
func (e *env) waitDead(class string, d time.Duration) *sidekiq.Job {
	e.t.Helper()
	var found *sidekiq.Job
	waitFor(e.t, d, class+" in the dead set", func() bool {
		for _, j := range e.dead() {
			if j.HandlerClass() == class {
				found = j
				return true
			}
		}
		return false
	})
	return found
}

// status loads the token's csv_processing_statuses row.
func (e *env) status(token string) models.CsvProcessingStatus {
	e.t.Helper()
	st, err := e.models.StatusByToken(context.Background(), token)
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

// queue returns the token's queue name.
func (e *env) queue(token string) string {
	e.t.Helper()
	q, err := e.router.For(token)
	if err != nil {
		e.t.Fatal(err)
	}
	return q
}

// waitStopped waits until the launcher was asked to stop n workers.
func (e *env) waitStopped(n int, d time.Duration) {
	e.t.Helper()
	waitFor(e.t, d, "worker stop", func() bool { return e.stoppedCount() >= n })
}

// rowFiles lists the row files left in the store for token.
func (e *env) rowFiles(token string) []string {
	e.t.Helper()
	infos, err := e.store.List(context.Background(), contract.RowKeyPrefix(token))
	if err != nil {
		e.t.Fatal(err)
	}
	var keys []string
	for _, i := range infos {
		keys = append(keys, i.Key)
	}
	return keys
}

// manifestRows reads manifest.csv into row number → [file, status, error],
// failing on a duplicate row.
func manifestRows(t *testing.T, files map[string][]byte) map[int][3]string {
	t.Helper()
	recs := manifest(t, files["manifest.csv"])
	if len(recs) == 0 || len(recs[0]) != 4 {
		t.Fatalf("manifest header: %q", recs)
	}
	out := map[int][3]string{}
	for _, rec := range recs[1:] {
		n, err := strconv.Atoi(rec[0])
		if err != nil {
			t.Fatalf("manifest row %q: %v", rec, err)
		}
		if _, dup := out[n]; dup {
			t.Fatalf("manifest lists row %d twice", n)
		}
		out[n] = [3]string{rec[1], rec[2], rec[3]}
	}
	return out
}

// names lists the ZIP's entries other than the manifest, sorted.
func names(files map[string][]byte) []string {
	var out []string
	for n := range files {
		if n != "manifest.csv" {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// redisInt runs a Redis command that answers an integer.
func (e *env) redisInt(cmd string, args ...any) int {
	e.t.Helper()
	n, err := redis.Int(e.db.Do(e.t, cmd, args...), nil)
	if err != nil && err != redis.ErrNil {
		e.t.Fatalf("%s %v: %v", cmd, args, err)
	}
	return n
}

// splitStored stores csv as a new token's upload, creates its pdf report
// and splits it by reference, as the server does; it returns the report's
// id and the token.
func (e *env) splitStored(csv string) (int64, string) {
	e.t.Helper()
	ctx := context.Background()
	token := router.NewToken()
	src := contract.UploadKey(token)
	if err := e.store.Put(ctx, src, strings.NewReader(csv)); err != nil {
		e.t.Fatal(err)
	}
	rep := models.ClientReport{ReportType: models.ReportTypePDF, SourceKey: src}
	if err := e.models.CreateReport(ctx, &rep); err != nil {
		e.t.Fatal(err)
	}
	e.split(contract.SourceRef{SourceKey: src, Token: token}, "pdf", rep.ID)
	return rep.ID, token
}

// gatedRun splits rows rows ("pdf", for a gateRenderer) and waits until
// done rows are recorded while the others wait in the token's queue; it
// returns the report's id and the token.
func (e *env) gatedRun(rows, done int) (int64, string) {
	e.t.Helper()
	ctx := context.Background()
	id := e.newReport(models.ReportTypePDF)
	var csv strings.Builder
	csv.WriteString("id,v\n")
	for i := 1; i <= rows; i++ {
		fmt.Fprintf(&csv, "r%d,%d\n", i, i)
	}
	e.split(csv.String(), "pdf", id)
	var token string
	waitFor(e.t, 20*time.Second, fmt.Sprintf("%d rows done and the rest queued", done), func() bool {
		rep, _ := e.models.ReportByID(ctx, id)
		if token = rep.Token; token == "" {
			return false
		}
		return e.ledgerCount(token) >= done && e.redisInt("LLEN", "queue:"+e.queue(token)) > 0
	})
	return id, token
}
