package jobs_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/models"
	"github.com/pallarel/pallarel/render"
	"github.com/pallarel/pallarel/sidekiq"
)

func TestHeaderOnlyCSV(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	id := e.newReport(models.ReportTypeXLSX)
	e.split("個別識別番号,保険者名,年度\r\n", "xlsx", id)
	rep := e.completed(id, 30*time.Second)
	if rep.Count != 0 || rep.File != contract.ResultKey(rep.Token) {
		t.Fatalf("report: %+v", rep)
	}
	files := e.readZip(rep.File)
	if len(files) != 1 || len(manifestRows(t, files)) != 0 {
		t.Fatalf("zip: %v", names(files))
	}
	if st := e.status(rep.Token); st.TotalCount != 0 || st.DoneCount != 0 || st.FinalizedAt == nil {
		t.Fatalf("status: %+v", st)
	}
}

func TestUnreadableCSV(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	binary := "PK\x03\x04\x14\x00\x00\x00\x08\x00個別識別番号"
	if err := e.store.Put(context.Background(), "uploads/bin.csv", strings.NewReader(binary)); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		src  any
		want string
	}{
		{"empty", "", "empty"},
		{"blank lines", "\r\n\n\r\n", "empty"},
		{"binary inline", binary, "binary"},
		{"binary by reference", contract.SourceRef{SourceKey: "uploads/bin.csv"}, "binary"},
		{"missing upload", contract.SourceRef{SourceKey: "uploads/none.csv"}, "uploads/none.csv does not exist"},
	}
	for _, tc := range cases {
		id := e.newReport(models.ReportTypeXLSX)
		jid := e.split(tc.src, "xlsx", id)
		rep := e.waitReport(id, 20*time.Second)
		// (jobDied may rewrite the message with the kill error's "kill job: " prefix.)
		if rep.Status != models.ReportFailed || !strings.Contains(rep.ErrorMessage, "CSV cannot be read: ") || !strings.Contains(rep.ErrorMessage, tc.want) {
			t.Errorf("%s: report %+v", tc.name, rep)
			continue
		}
		var dead *sidekiq.Job
		waitFor(t, 10*time.Second, tc.name+" split in the dead set", func() bool {
			for _, j := range e.dead() {
				if j.JID == jid {
					dead = j
					return true
				}
			}
			return false
		})
		if dead.HandlerClass() != contract.Split.Name || !strings.Contains(dead.StringField("error_message"), "CSV cannot be read: ") || !strings.Contains(dead.StringField("error_message"), tc.want) {
			t.Errorf("%s: dead job %s error_message %q, report %q", tc.name, dead.HandlerClass(), dead.StringField("error_message"), rep.ErrorMessage)
		}
		if st := e.status(rep.Token); !strings.Contains(st.LastError, "CSV cannot be read: ") || !strings.Contains(st.LastError, tc.want) {
			t.Errorf("%s: status last_error %q", tc.name, st.LastError)
		}
	}
}

func TestMalformedRows(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	csv := "個別識別番号,保険者名,年度\n" +
		"M-1,東京,2024\n" +
		"M-2,too,many,fields\n" +
		"M-3,大\"阪,2024\n" + // bare quote
		"M-4,名古屋,2025\n" +
		"M-5,\"札幌\"x,2025\n" + // text after a closing quote
		"M-6,福岡,2026\n"
	id := e.newReport(models.ReportTypeXLSX)
	e.split(csv, "text", id)
	rep := e.completed(id, 30*time.Second)
	m := manifestRows(t, e.readZip(rep.File))
	if rep.Count != 3 || len(m) != 6 {
		t.Fatalf("report %+v, manifest %v", rep, m)
	}
	for _, n := range []int{1, 4, 6} {
		if m[n][1] != "done" || !strings.HasPrefix(m[n][0], fmt.Sprintf("row-%06d-M-%d", n, n)) {
			t.Errorf("row %d: %q", n, m[n])
		}
	}
	for n, reason := range map[int]string{2: "wrong number of fields", 3: "bare", 5: "quote"} {
		if m[n][1] != "failed" || m[n][0] != "" || !strings.Contains(m[n][2], reason) || !strings.HasPrefix(m[n][2], fmt.Sprintf("line %d (row %d)", n+1, n)) {
			// Once "line N (row M)", not "line N: line N (row M)".
			t.Errorf("row %d: %q, want failed with %q", n, m[n], reason)
		}
	}
	if st := e.status(rep.Token); st.TotalCount != 6 || st.DoneCount != 3 || st.FailedCount != 3 {
		t.Errorf("status: %+v", st)
	}
}

func TestUnknownReportType(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	id := e.newReport(models.ReportTypeXLSX)
	jid := e.split(outputCSV, "docx", id)
	dead := e.waitDead(contract.Split.Name, 20*time.Second)
	msg := dead.StringField("error_message")
	if dead.JID != jid || !strings.Contains(msg, `report type "docx"`) || !strings.Contains(msg, "unknown renderer") {
		t.Fatalf("dead %s: %q", dead.JID, msg)
	}
	// The user is told, instead of a report pending for ever.
	rep := e.waitReport(id, 10*time.Second)
	if rep.Status != models.ReportFailed || !strings.Contains(rep.ErrorMessage, `report type "docx"`) {
		t.Fatalf("report: %+v", rep)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.started) != 0 {
		t.Errorf("workers started for an unknown type: %v", e.started)
	}
}

// rowJob builds a row job as handleSplit does.
func rowJob(t *testing.T, queue, token string, reportID int64, row string) *sidekiq.Job {
	t.Helper()
	j, err := sidekiq.NewJob(contract.Row.Name, json.RawMessage(row), "text", reportID, "/tmp/reports/"+token, token)
	if err != nil {
		t.Fatal(err)
	}
	j.Queue = queue
	return j
}

// pushRaw writes a job straight into Redis, as a client without our
// middleware (Ruby, redis-cli) would.
func (e *env) pushRaw(j *sidekiq.Job) {
	e.t.Helper()
	b, err := j.Encode()
	if err != nil {
		e.t.Fatal(err)
	}
	e.db.Do(e.t, "SADD", "queues", j.Queue)
	e.db.Do(e.t, "LPUSH", "queue:"+j.Queue, b)
}

func TestRowJobQueueIsolation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := context.Background()
	const token = "0f8fad5b-d9cb-469f-a165-70867728950e"
	right := e.queue(token)
	id := e.newReport(models.ReportTypeXLSX)

	// Refused at push by the client middleware.
	strict := sidekiq.NewClient(e.db.Pool, sidekiq.ClientOptions{Middleware: []sidekiq.ClientMiddleware{e.pipeline.IsolationClient}})
	_, err := strict.Push(ctx, rowJob(t, "default", token, id, `{"個別識別番号":"X"}`))
	if !errors.Is(err, sidekiq.ErrBadArgs) || !strings.Contains(err.Error(), "must run on queue "+right) {
		t.Fatalf("push to the wrong queue: %v", err)
	}
	if n := e.redisInt("LLEN", "queue:default"); n != 0 {
		t.Fatalf("queue:default holds %d jobs", n)
	}
	// The right queue is accepted.
	if _, err := strict.Push(ctx, rowJob(t, right, token, id, `{"個別識別番号":"X"}`)); err != nil {
		t.Fatalf("push to %s: %v", right, err)
	}

	// Forced into Redis, it is killed when it runs, naming the right queue.
	wrong := rowJob(t, "default", token, id, `{"個別識別番号":"X"}`)
	e.pushRaw(wrong)
	dead := e.waitDead(contract.Row.Name, 20*time.Second)
	if dead.JID != wrong.JID || !strings.Contains(dead.StringField("error_message"), "must run on queue "+right) {
		t.Fatalf("dead %s: %q", dead.JID, dead.StringField("error_message"))
	}
	if files := e.rowFiles(token); len(files) != 0 {
		t.Fatalf("the refused row made files: %v", files)
	}
}

func TestRowJobMalformedToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	id := e.newReport(models.ReportTypeXLSX)
	bad := rowJob(t, "default", "../../etc", id, `{"個別識別番号":"X"}`)
	e.pushRaw(bad)
	dead := e.waitDead(contract.Row.Name, 20*time.Second)
	if dead.JID != bad.JID || !strings.Contains(dead.StringField("error_message"), "token") {
		t.Fatalf("dead %s: %q", dead.JID, dead.StringField("error_message"))
	}
	// A finalize job with a bad token goes the same way.
	fin, err := sidekiq.NewJob(contract.Finalize.Name, "/tmp/reports/x", "text", id, "", 1, 10, time.Now().Unix())
	if err != nil {
		t.Fatal(err)
	}
	fin.Queue = "default"
	e.pushRaw(fin)
	e.waitDead(contract.Finalize.Name, 20*time.Second)
	// The worker lives on: a real report still completes.
	id = e.newReport(models.ReportTypeXLSX)
	e.split(outputCSV, "text", id)
	if rep := e.completed(id, 30*time.Second); rep.Count != 3 {
		t.Fatalf("report after bad jobs: %+v", rep)
	}
}

// failingRenderer fails every row it is given.
type failingRenderer struct{ calls atomic.Int32 }

func (*failingRenderer) Name() string { return "broken" }
func (*failingRenderer) Ext() string  { return ".txt" }
func (f *failingRenderer) Render(ctx context.Context, w io.Writer, row render.Row) error {
	f.calls.Add(1)
	_, _ = io.WriteString(w, "partial")
	return fmt.Errorf("printer on fire for row %d", row.Number)
}

func TestRowRendererAlwaysFails(t *testing.T) {
	t.Parallel()
	broken := &failingRenderer{}
	e := newEnvWith(t, envOptions{renderers: []render.Renderer{broken}})
	ctx := context.Background()
	id := e.newReport(models.ReportTypeXLSX)
	e.split("個別識別番号,年度\nF-1,2024\nF-2,2025\n", "broken", id)
	// The rows run with retry: 3. Let time pass for every retry (make it
	// due now) until both rows are dead: 1 run + 3 retries each. (The Web
	// UI's "Retry Now" would not do: it gives the attempt back, as Sidekiq.)
	waitFor(t, 30*time.Second, "both rows dead", func() bool {
		entries, err := e.api.SetEntries(ctx, sidekiq.RetrySet, 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, en := range entries {
			e.db.Do(t, "ZADD", "retry", "XX", time.Now().Unix(), en.Raw)
		}
		return len(e.dead()) == 2
	})
	rep := e.completed(id, 30*time.Second)
	m := manifestRows(t, e.readZip(rep.File))
	if rep.Count != 0 || len(m) != 2 {
		t.Fatalf("report %+v, manifest %v", rep, m)
	}
	for n := 1; n <= 2; n++ {
		if m[n][1] != "failed" || m[n][0] != "" || !strings.Contains(m[n][2], fmt.Sprintf("printer on fire for row %d", n)) {
			t.Errorf("row %d: %q", n, m[n])
		}
	}
	if got := broken.calls.Load(); got != 8 {
		t.Errorf("renderer ran %d times, want 8 (2 rows × 4 attempts)", got)
	}
	for _, j := range e.dead() {
		var count int
		if _, err := j.Field("retry_count", &count); err != nil || count != 3 {
			t.Errorf("dead row %s retry_count %d (%v)", j.JID, count, err)
		}
	}
	if st := e.status(rep.Token); st.DoneCount != 0 || st.FailedCount != 2 {
		t.Errorf("status: %+v", st)
	}
	// The report is marked completed before End's cleanup deletes the
	// run's row storage (the frames holding the failed rows' reasons).
	waitFor(t, 10*time.Second, "the run's row files deleted", func() bool { return len(e.rowFiles(rep.Token)) == 0 })
}
