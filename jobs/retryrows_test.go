package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/jobs"
	"github.com/pallarel/pallarel/models"
	"github.com/pallarel/pallarel/render"
	"github.com/pallarel/pallarel/router"
	"github.com/pallarel/pallarel/sidekiq"
)

// flakyRenderer ("pdf") fails, for good, the first time it sees a row whose
// v column is FAIL; it renders it the next time.
type flakyRenderer struct {
	mu   sync.Mutex
	seen map[int]bool
}

func (*flakyRenderer) Name() string { return "pdf" }
func (*flakyRenderer) Ext() string  { return ".txt" }
func (f *flakyRenderer) Render(ctx context.Context, w io.Writer, row render.Row) error {
	if row.Fields["v"] == "FAIL" {
		f.mu.Lock()
		first := !f.seen[row.Number]
		f.seen[row.Number] = true
		f.mu.Unlock()
		if first {
			return sidekiq.Kill(fmt.Errorf("marker FAIL on row %d", row.Number))
		}
	}
	_, err := fmt.Fprintf(w, "row %d: %s", row.Number, row.Fields["id"])
	return err
}

func TestRetryFailedRows(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, envOptions{renderers: []render.Renderer{&flakyRenderer{seen: map[int]bool{}}}})
	ctx := context.Background()
	token := router.NewToken()
	const rows = 700 // more than one pack of restored rows
	fail := map[int]bool{2: true, 300: true, 700: true}
	var csv strings.Builder
	csv.WriteString("id,v\n")
	for i := 1; i <= rows; i++ {
		v := "ok"
		if fail[i] {
			v = "FAIL"
		}
		fmt.Fprintf(&csv, "id-%04d,%s\n", i, v)
	}
	csv.WriteString("\"broken,x\n") // row 701: unparseable, fails again on retry
	src := "uploads/" + token + ".csv"
	if err := e.store.Put(ctx, src, strings.NewReader(csv.String())); err != nil {
		t.Fatal(err)
	}
	rep := models.ClientReport{ReportType: models.ReportTypePDF, SourceKey: src}
	if err := e.models.CreateReport(ctx, &rep); err != nil {
		t.Fatal(err)
	}
	e.split(contract.SourceRef{SourceKey: src, Token: token}, "pdf", rep.ID)
	first := e.completed(rep.ID, 60*time.Second)
	before := e.readZip(first.File)
	m := manifestRows(t, before)
	if len(m) != rows+1 || first.Count != rows-3 {
		t.Fatalf("first run: %d manifest rows, %d files", len(m), first.Count)
	}
	for n := range fail {
		if m[n][1] != "failed" || !strings.Contains(m[n][2], "marker FAIL") {
			t.Fatalf("row %d: %q", n, m[n])
		}
	}

	// The failed rows, with their reasons, in row order and paginated.
	page, err := e.pipeline.FailedRows(ctx, token, 0, 2)
	if err != nil {
		t.Fatal(err)
	}
	if page.Source != "manifest" || page.Total != 4 || len(page.Rows) != 2 || page.Rows[0].Row != 2 || page.Rows[1].Row != 300 ||
		!strings.Contains(page.Rows[0].Error, "marker FAIL on row 2") {
		t.Fatalf("page 1: %+v", page)
	}
	if page, _ = e.pipeline.FailedRows(ctx, token, 2, 2); len(page.Rows) != 2 || page.Rows[0].Row != 700 || page.Rows[1].Row != 701 {
		t.Fatalf("page 2: %+v", page)
	}
	// Sidekiq's retries of the dead rows are not needed: the retry pushes them afresh.
	n, err := e.pipeline.RetryFailed(ctx, token)
	if err != nil || n != 3 {
		t.Fatalf("RetryFailed = %d, %v; want 3 (the unparseable row is not pushed)", n, err)
	}
	if _, err := e.pipeline.RetryFailed(ctx, token); !errors.Is(err, contract.ErrNotRetryable) {
		t.Errorf("retry of a running run: %v", err)
	}
	second := e.completed(rep.ID, 60*time.Second)
	after := e.readZip(second.File)
	m = manifestRows(t, after)
	if len(m) != rows+1 || second.Count != rows {
		t.Fatalf("after retry: %d manifest rows, %d files", len(m), second.Count)
	}
	for i := 1; i <= rows; i++ {
		if m[i][1] != "done" || m[i][0] == "" {
			t.Fatalf("row %d after retry: %q", i, m[i])
		}
		want := fmt.Sprintf("row %d: id-%04d", i, i)
		if got := string(after[m[i][0]]); got != want {
			t.Fatalf("row %d file %s = %q, want %q", i, m[i][0], got, want)
		}
	}
	if m[rows+1][1] != "failed" || !strings.Contains(m[rows+1][2], "line") {
		t.Errorf("unparseable row after retry: %q", m[rows+1])
	}
	st := e.status(token)
	if st.RunState() != models.RunCompleted || st.DoneCount != rows || st.FailedCount != 1 {
		t.Errorf("status after retry: state %s done %d failed %d", st.RunState(), st.DoneCount, st.FailedCount)
	}
	// The report is marked completed before the finalizer deletes the row
	// files: wait for that cleanup.
	waitFor(t, 10*time.Second, "row files deleted after the retry", func() bool { return len(e.rowFiles(token)) == 0 })
	if page, _ = e.pipeline.FailedRows(ctx, token, 0, 10); page.Total != 1 || page.Rows[0].Row != rows+1 {
		t.Errorf("failed rows after retry: %+v", page)
	}
	if len(e.started) != 2 {
		t.Errorf("workers launched: %v, want one per run", e.started)
	}
}

func TestRetryRefused(t *testing.T) {
	t.Parallel()
	hook := newHookReceiver(t)
	e := newEnvWith(t, envOptions{deps: func(d *jobs.Deps) { d.WebhookURL, d.WebhookSecret = hook.URL, "k" }})
	ctx := context.Background()
	id := e.newReport(models.ReportTypeXLSX)
	e.split("id,v\na,1\n", "text", id)
	rep := e.completed(id, 30*time.Second)
	// The finalizer's end, as the webhook tells it.
	e.pipeline.RunEndedForTest(ctx, rep.Token)
	waitFor(t, 20*time.Second, "the webhook", func() bool { return len(hook.deliveries()) >= 1 })
	if p := verify(t, hook.deliveries()[0], "k"); p.State != "completed" || p.DoneCount != 1 || p.TotalCount != 1 ||
		p.DownloadPath != "/csv_processing/"+rep.Token+"/download" {
		t.Errorf("payload %+v", p)
	}
	// A caller that sees the end before ended_at is written (the
	// finalizer claims finalized_at first) and one after it deliver once
	// between them.
	var ended *time.Time
	waitFor(t, 10*time.Second, "the run's end recorded", func() bool { ended = e.status(rep.Token).EndedAt; return ended != nil })
	// The ended run is in Pallarel's table (its status row went at the end).
	if err := e.models.DB.Table("pallarel_runs").Where("token = ?", rep.Token).Update("ended_at", nil).Error; err != nil {
		t.Fatal(err)
	}
	e.pipeline.RunEndedForTest(ctx, rep.Token)
	if err := e.models.DB.Table("pallarel_runs").Where("token = ?", rep.Token).Update("ended_at", ended).Error; err != nil {
		t.Fatal(err)
	}
	e.pipeline.RunEndedForTest(ctx, rep.Token)
	time.Sleep(500 * time.Millisecond) // a second delivery would come within this
	if n := len(hook.deliveries()); n != 1 {
		t.Errorf("%d deliveries of one end", n)
	}
	if _, err := e.pipeline.RetryFailed(ctx, rep.Token); !errors.Is(err, contract.ErrNotRetryable) {
		t.Errorf("retry of a run without failed rows: %v", err)
	}
	if _, err := e.pipeline.RetryFailed(ctx, router.NewToken()); !errors.Is(err, models.ErrNotFound) {
		t.Errorf("retry of an unknown run: %v", err)
	}
	if _, err := e.pipeline.RetryFailed(ctx, "../x"); err == nil {
		t.Error("a bad token was accepted")
	}
}
