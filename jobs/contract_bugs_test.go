package jobs_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/jobs"
	"github.com/pallarel/pallarel/models"
	"github.com/pallarel/pallarel/render"
	"github.com/pallarel/pallarel/sidekiq"
)

// logBuffer is an io.Writer safe for the pipeline's goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// The split's log line for an unreadable CSV names the CSV's error, not
// the (nil) error of ending the run.
func TestUnreadableCSVLogsTheCSVError(t *testing.T) {
	t.Parallel()
	var logs logBuffer
	e := newEnvWith(t, envOptions{deps: func(d *jobs.Deps) { d.Logger = slog.New(slog.NewTextHandler(&logs, nil)) }})
	id := e.newReport(models.ReportTypeXLSX)
	e.split("\r\n\n", "xlsx", id)
	if rep := e.waitReport(id, 20*time.Second); rep.Status != models.ReportFailed {
		t.Fatalf("report %+v", rep)
	}
	var line string
	waitFor(t, 10*time.Second, "the split's log line", func() bool {
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, "split: unreadable CSV") {
				line = l
				return true
			}
		}
		return false
	})
	if !strings.Contains(line, "empty") || strings.Contains(line, "err=<nil>") {
		t.Fatalf("log line does not name the CSV error: %s", line)
	}
}

// alwaysFails ("pdf") fails, with an error Sidekiq retries, every row whose
// v column is FAIL.
type alwaysFails struct{}

func (alwaysFails) Name() string { return "pdf" }
func (alwaysFails) Ext() string  { return ".txt" }
func (alwaysFails) Render(ctx context.Context, w io.Writer, row render.Row) error {
	if row.Fields["v"] == "FAIL" {
		return fmt.Errorf("marker FAIL on row %d", row.Number)
	}
	_, err := fmt.Fprintf(w, "row %d", row.Number)
	return err
}

// "Retry failed rows" pushes its rows with ROW_JOB_RETRY, as the split
// does: with no retries, a row that fails again goes straight to the dead
// set, and the retried run completes.
func TestRetryFailedRowsKeepsRowJobRetry(t *testing.T) {
	t.Parallel()
	noRetries := 0
	e := newEnvWith(t, envOptions{renderers: []render.Renderer{alwaysFails{}},
		deps: func(d *jobs.Deps) { d.RowRetries = &noRetries }})
	ctx := context.Background()
	id, token := e.splitStored("id,v\na,ok\nb,FAIL\nc,ok\n")
	e.completed(id, 60*time.Second)
	rowsDead := func() []*sidekiq.Job {
		var out []*sidekiq.Job
		for _, j := range e.dead() {
			if contract.Row.Is(j.HandlerClass()) {
				out = append(out, j)
			}
		}
		return out
	}
	if d := rowsDead(); len(d) != 1 || string(d[0].Retry) != "0" {
		t.Fatalf("first run: dead rows %d, want 1 with retry 0", len(d))
	}
	if n, err := e.pipeline.RetryFailed(ctx, token); err != nil || n != 1 {
		t.Fatalf("RetryFailed = %d, %v; want 1", n, err)
	}
	// The retried row fails again: with retry 0 it is dead at once, never
	// in the retry set.
	waitFor(t, 30*time.Second, "the retried row dead or retrying", func() bool {
		retrying, err := e.api.SetEntries(ctx, sidekiq.RetrySet, 0, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(retrying) > 0 {
			t.Fatalf("the retried row waits in the retry set: %s", retrying[0].Raw)
		}
		return len(rowsDead()) == 2
	})
	for _, j := range rowsDead() {
		if string(j.Retry) != "0" {
			t.Errorf("dead row %s has retry %s, want 0 (ROW_JOB_RETRY)", j.JID, j.Retry)
		}
	}
	again := e.completed(id, 60*time.Second)
	if m := manifestRows(t, e.readZip(again.File)); m[2][1] != "failed" || m[1][1] != "done" || m[3][1] != "done" {
		t.Fatalf("manifest after retry: %v", m)
	}
}
