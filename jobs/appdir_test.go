package jobs_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/jobs"
	"github.com/pallarel/pallarel/models"
	"github.com/pallarel/pallarel/router"
	"github.com/pallarel/pallarel/sidekiq"
)

// A run Ruby and Go workers share, with APP_REPORTS_DIR naming the folder
// where Go sees the app's /tmp/reports: the Ruby worker ran the first rows
// of a Ruby split and left its files there (names of the app's, without
// the row), Go's token worker runs the rest. Before done_count counts a Go
// row, its copy is in the folder (so the app's finalizer, had it run, would
// zip every row); Go's finalizer puts the app's files in its ZIP under
// ruby/, lists every row done, counts every file, and removes the folder.
func TestAppReportsDirJoinsBothSides(t *testing.T) {
	t.Parallel()
	appDir := t.TempDir()
	e := newEnvWith(t, envOptions{deps: func(d *jobs.Deps) { d.AppReportsDir = appDir }})
	ctx := context.Background()
	const total, rubyRan = 20, 6
	id := e.newReport(models.ReportTypeXLSX)
	token := "0b6d7d4e-29a4-4f0c-a3f1-3f6d9c1e2a77"
	queue := router.QueueName(token)
	if _, err := e.models.CreateStatus(ctx, token, queue, total); err != nil {
		t.Fatal(err)
	}
	if err := e.models.MarkReportProcessing(ctx, id, token); err != nil {
		t.Fatal(err)
	}
	runDir := filepath.Join(appDir, token)
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		t.Fatal(err)
	}
	rowHash := func(i int) map[string]any {
		return map[string]any{"個別識別番号": fmt.Sprintf("AD%03d", i), "保険者名": "x", "年度": "2024"}
	}
	for i := 1; i <= rubyRan; i++ { // what the app's row job leaves
		b, _ := json.Marshal(rowHash(i))
		if err := os.WriteFile(filepath.Join(runDir, fmt.Sprintf("random_%s_%04x.txt", token, i)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.models.IncrementDone(ctx, token, rubyRan); err != nil {
		t.Fatal(err)
	}
	var pushed []*sidekiq.Job
	for i := rubyRan + 1; i <= total; i++ {
		row, _ := json.Marshal(rowHash(i))
		pushed = append(pushed, &sidekiq.Job{Class: contract.Row.Name, Queue: queue, Retry: json.RawMessage("3"),
			Args: rawArgs(t, json.RawMessage(row), "text", id, contract.ReportDir(token), token)})
	}
	if _, err := e.client.PushBulk(ctx, pushed); err != nil {
		t.Fatal(err)
	}
	e.runWorker(queue, []sidekiq.QueueWeight{{Name: queue}}, 4)
	waitFor(t, 30*time.Second, "done_count at the total", func() bool { return e.status(token).DoneCount >= total })

	// Every row's file is in the folder, once, before any finalizer ran.
	ents, err := os.ReadDir(runDir)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, ent := range ents {
		if strings.HasPrefix(ent.Name(), ".") {
			t.Errorf("a temporary copy left in the folder: %s", ent.Name())
			continue
		}
		body, err := os.ReadFile(filepath.Join(runDir, ent.Name()))
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= total; i++ {
			if id := fmt.Sprintf("AD%03d", i); strings.Contains(string(body), id) {
				seen[id]++
			}
		}
	}
	for i := 1; i <= total; i++ {
		if id := fmt.Sprintf("AD%03d", i); seen[id] != 1 {
			t.Errorf("row %s: %d files in the app's folder, want 1", id, seen[id])
		}
	}

	fin := &sidekiq.Job{Class: contract.Finalize.Name, Queue: queue, Retry: json.RawMessage("3"),
		Args: rawArgs(t, contract.ReportDir(token), "text", id, token)}
	if _, err := e.client.Push(ctx, fin); err != nil {
		t.Fatal(err)
	}
	rep := e.completed(id, 30*time.Second)
	if rep.Count != total {
		t.Errorf("client_reports.count %d, want %d (Go's rows and the app's files)", rep.Count, total)
	}
	files := e.readZip(rep.File)
	rubyFiles := 0
	for name, body := range files {
		if strings.HasPrefix(name, "ruby/") {
			rubyFiles++
			var row map[string]any
			if err := json.Unmarshal(body, &row); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
	}
	if rubyFiles != rubyRan || len(files) != total+1 {
		t.Errorf("ZIP: %d ruby/ entries of %d (want %d of %d): %v", rubyFiles, len(files), rubyRan, total+1, names(files))
	}
	rows := manifestRows(t, files)
	for n := 1; n <= total; n++ {
		r, ok := rows[n]
		switch {
		case !ok:
			t.Errorf("row %d not in the manifest", n)
		case r[1] != "done":
			t.Errorf("row %d: %q", n, r)
		case n <= rubyRan && !strings.Contains(r[2], "ruby/"):
			t.Errorf("row %d (Ruby's) says nothing of ruby/: %q", n, r)
		case n > rubyRan && files[r[0]] == nil:
			t.Errorf("row %d (Go's): file %q not in the ZIP", n, r[0])
		}
	}
	waitFor(t, 10*time.Second, "the app's folder removed", func() bool {
		_, err := os.Stat(runDir)
		return os.IsNotExist(err)
	})
}
