package jobs_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/models"
	"github.com/pallarel/pallarel/router"
	"github.com/pallarel/pallarel/sidekiq"
)

// A switch from Ruby to Go on a Ruby split, where the Ruby worker ran the
// first rows and stopped between two supervisor passes (so no pass saw it
// alive): Go's token worker numbers the rows it finds after those the
// database counts ended, keeps the run's books as Ruby's, and its finalizer
// ends the run. Before, only a supervisor pass that saw the Ruby worker
// gave the books to Ruby, and the finalizer re-pushed itself for ever
// (TestRailsSwitchRubyToGo failed so in CI).
func TestRubySplitRubyRanFirstRows(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := context.Background()
	const total, rubyRan = 20, 6
	id := e.newReport(models.ReportTypeXLSX)
	token := "6fea4b12-f5fd-4a03-9e9c-421dff6ac6fb"
	queue := router.QueueName(token)
	// What the app's SplitCsvJob leaves: the status row and the report
	// processing, then its Ruby worker's done_count for the first rows.
	if _, err := e.models.CreateStatus(ctx, token, queue, total); err != nil {
		t.Fatal(err)
	}
	if err := e.models.MarkReportProcessing(ctx, id, token); err != nil {
		t.Fatal(err)
	}
	if err := e.models.IncrementDone(ctx, token, rubyRan); err != nil {
		t.Fatal(err)
	}
	// The rows Ruby did not reach, as the app pushes them (row.to_h only),
	// and the app's finalizer, all on the token queue.
	var pushed []*sidekiq.Job
	for i := rubyRan + 1; i <= total; i++ {
		row, _ := json.Marshal(map[string]string{"個別識別番号": fmt.Sprintf("R%03d", i), "保険者名": "x", "年度": "2024"})
		pushed = append(pushed, &sidekiq.Job{Class: contract.Row.Name, Queue: queue, Retry: json.RawMessage("3"),
			Args: rawArgs(t, json.RawMessage(row), "text", id, contract.ReportDir(token), token)})
	}
	pushed = append(pushed, &sidekiq.Job{Class: contract.Finalize.Name, Queue: queue, Retry: json.RawMessage("3"),
		Args: rawArgs(t, contract.ReportDir(token), "text", id, token)})
	if _, err := e.client.PushBulk(ctx, pushed); err != nil {
		t.Fatal(err)
	}
	e.runWorker(queue, []sidekiq.QueueWeight{{Name: queue}}, 4)

	rep := e.completed(id, 30*time.Second)
	if rep.Count != total-rubyRan {
		t.Errorf("client_reports.count %d, want the %d rows Go ran", rep.Count, total-rubyRan)
	}
	rows := manifestRows(t, e.readZip(rep.File))
	if len(rows) != total {
		t.Fatalf("manifest lists %d rows, want %d", len(rows), total)
	}
	for n := 1; n <= total; n++ {
		r, ok := rows[n]
		switch {
		case !ok:
			t.Errorf("row %d not in the manifest", n)
		case n <= rubyRan && !strings.Contains(strings.Join(r[:], " "), "Ruby worker"):
			t.Errorf("row %d (Ruby's): %q", n, r)
		case n > rubyRan && strings.Contains(strings.Join(r[:], " "), "Ruby worker"):
			t.Errorf("row %d (Go's): %q", n, r)
		}
	}
}

// rawArgs marshals each positional argument.
func rawArgs(t *testing.T, args ...any) []json.RawMessage {
	t.Helper()
	out := make([]json.RawMessage, len(args))
	for i, a := range args {
		b, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = b
	}
	return out
}
