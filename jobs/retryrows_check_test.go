package jobs_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/models"
)

// A run whose only failed rows failed to parse has nothing a retry could
// fix: RetryFailed says so and leaves the run, its ZIP and its counts as
// they ended, instead of reopening it and writing the ZIP again.
func TestRetryNothingToRetry(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, envOptions{})
	ctx := context.Background()
	id := e.newReport(models.ReportTypeXLSX)
	e.split("id,v\na,1\n\"broken,x\nb,2\n\"again,y\n", "text", id)
	rep := e.completed(id, 30*time.Second)
	token := rep.Token
	zipBefore := e.readFile(rep.File)
	// The report is marked completed a moment before the run's ended_at.
	var before models.CsvProcessingStatus
	waitFor(t, 10*time.Second, "the run's end recorded", func() bool {
		before = e.status(token)
		return before.EndedAt != nil
	})
	if before.FailedCount != 2 || before.DoneCount != 2 {
		t.Fatalf("first run: done %d failed %d", before.DoneCount, before.FailedCount)
	}
	waitFor(t, 10*time.Second, "row files deleted by the finalizer", func() bool { return len(e.rowFiles(token)) == 0 })
	for range 2 {
		n, err := e.pipeline.RetryFailed(ctx, token)
		if !errors.Is(err, contract.ErrNothingToRetry) || n != 0 {
			t.Fatalf("RetryFailed = %d, %v; want ErrNothingToRetry", n, err)
		}
	}
	after := e.status(token)
	if after.RunState() != models.RunCompleted || after.DoneCount != 2 || after.FailedCount != 2 || after.EndedAt == nil || !after.EndedAt.Equal(*before.EndedAt) {
		t.Errorf("run after a refused retry: %s done %d failed %d ended %v (was %v)", after.RunState(), after.DoneCount, after.FailedCount, after.EndedAt, before.EndedAt)
	}
	if r := e.waitReport(id, time.Second); r.Status != models.ReportCompleted || !bytes.Equal(e.readFile(r.File), zipBefore) {
		t.Errorf("report after a refused retry: %s, ZIP rewritten: %v", r.Status, !bytes.Equal(e.readFile(r.File), zipBefore))
	}
	if files := e.rowFiles(token); len(files) != 0 {
		t.Errorf("restored row files left behind: %v", files)
	}
	if len(e.started) != 1 {
		t.Errorf("workers launched: %v, want only the run's own", e.started)
	}
}

func (e *env) readFile(key string) []byte {
	e.t.Helper()
	rc, err := e.store.Open(context.Background(), key)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}
