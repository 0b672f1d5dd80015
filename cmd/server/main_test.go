package main

import (
	"crypto/sha1"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/internal/e2etest"
	"github.com/pallarel/pallarel/internal/redistest"
	"github.com/pallarel/pallarel/sidekiq/sidekiqtest"
)

func TestMain(m *testing.M) {
	gin.SetMode(gin.ReleaseMode) // process-wide, as main sets it
	os.Exit(m.Run())
}

// runTimeout bounds one run from upload to completed.
const runTimeout = 60 * time.Second

// TestRunEndToEnd starts the server as main does, on real Redis with the
// in-process report and token workers and SQLite in DATA_DIR, and drives a
// run through HTTP as an API client and as a browser form would.
func TestRunEndToEnd(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	dataDir := t.TempDir()
	srv := e2etest.Start(t, Run, map[string]string{"REDIS_URL": db.URL(), "DATA_DIR": dataDir}, "-workers")

	if !strings.Contains(srv.Stdout.String(), srv.URL+"/") {
		t.Errorf("welcome text does not name %s:\n%s", srv.URL, srv.Stdout)
	}
	// The report worker's first heartbeat follows Run's ready signal.
	waitFor(t, 10*time.Second, "a Sidekiq process in Redis", func() bool {
		n, _ := redis.Int(db.Do(t, "SCARD", "processes"), nil)
		return n >= 1
	})

	// An API client: 201 JSON, poll, download.
	const rows = 25
	sub := e2etest.Submit(t, srv.URL, e2etest.CSV(rows), "text")
	sum := sha1.Sum([]byte(sub.Token))
	if want := "report-" + hex.EncodeToString(sum[:])[:16]; sub.Queue != want {
		t.Errorf("queue %q, want %q", sub.Queue, want)
	}
	st := e2etest.WaitEnded(t, srv.URL, sub.Token, runTimeout)
	if st.State != "completed" || st.TotalCount != rows || st.DoneCount != rows || st.FailedCount != 0 ||
		st.Percentage != 100 || st.DownloadURL != "/csv_processing/"+sub.Token+"/download" || st.ReportID != sub.ReportID {
		t.Fatalf("status: %+v", st)
	}
	if !strings.HasPrefix(st.WorkerTaskArn, "inproc:"+sub.Queue) {
		t.Errorf("worker_task_arn %q: the token worker was not started in-process", st.WorkerTaskArn)
	}
	e2etest.CheckTextReport(t, e2etest.ReadZip(t, e2etest.Download(t, srv.URL, sub.Token)), rows)
	if _, err := os.Stat(filepath.Join(dataDir, "storage", "reports", sub.Token+".zip")); err != nil {
		t.Errorf("report not in DATA_DIR/storage: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "pallarel.sqlite3")); err != nil {
		t.Errorf("SQLite database not in DATA_DIR: %v", err)
	}

	// A browser form post: 303 to the status page, which is HTML.
	resp, body := e2etest.Upload(t, srv.URL, e2etest.CSV(3), "text", "text/html,application/xhtml+xml")
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/csv_processing/") {
		t.Fatalf("form post: %s, Location %q: %s", resp.Status, loc, body)
	}
	token := strings.TrimPrefix(loc, "/csv_processing/")
	resp, body = e2etest.Get(t, srv.URL+loc, "text/html")
	if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Content-Type"), "text/html") ||
		!strings.Contains(string(body), `id="token">`+token+`<`) {
		t.Fatalf("status page: %s %s:\n%s", resp.Status, resp.Header.Get("Content-Type"), body)
	}
	if st := e2etest.WaitEnded(t, srv.URL, token, runTimeout); st.State != "completed" || st.DoneCount != 3 {
		t.Fatalf("form run: %+v", st)
	}

	// Cancelling ctx stops the server, its workers and their heartbeats.
	if code := srv.Stop(t); code != 0 {
		t.Fatalf("Run returned %d, want 0", code)
	}
	if ps, _ := redis.Strings(db.Do(t, "SMEMBERS", "processes"), nil); len(ps) != 0 {
		t.Errorf("processes left in Redis after stop: %q", ps)
	}
}

// TestRunUsageAndConfigErrors: bad flags and a bad environment exit with 2
// before anything starts.
func TestRunUsageAndConfigErrors(t *testing.T) {
	t.Parallel()
	var out, errs e2etest.Buffer
	lookup := func(k string) (string, bool) { return map[string]string{"PORT": "nope"}[k], k == "PORT" }
	if code := Run(t.Context(), []string{"-bogus"}, lookup, &out, &errs, nil); code != 2 {
		t.Errorf("unknown flag: exit %d, want 2", code)
	}
	if code := Run(t.Context(), nil, lookup, &out, &errs, nil); code != 2 || !strings.Contains(errs.String(), "PORT") {
		t.Errorf("bad PORT: exit %d, stderr %q", code, errs.String())
	}
}

// waitFor is sidekiqtest.WaitFor: cond polled until it holds, the test
// failed after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	sidekiqtest.WaitFor(t, d, what, cond)
}

// TestRunStopsWithOpenEventStream: a browser watching a run that is not
// finished keeps an events stream open; stopping the server must not wait
// for that run to end.
func TestRunStopsWithOpenEventStream(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	// Web only: the run stays pending, so its stream never ends by itself.
	srv := e2etest.Start(t, Run, map[string]string{"REDIS_URL": db.URL(), "DATA_DIR": t.TempDir(), "LAUNCHER": "none"})
	sub := e2etest.Submit(t, srv.URL, e2etest.CSV(2), "text")
	req, err := http.NewRequest(http.MethodGet, srv.URL+"/csv_processing/"+sub.Token+"/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream") // as EventSource sends it
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first := make([]byte, 64)
	if n, err := resp.Body.Read(first); err != nil || !strings.Contains(string(first[:n]), "event:status") {
		t.Fatalf("events stream: %q, %v", first[:n], err)
	}
	start := time.Now()
	code := srv.Stop(t)
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("Run took %v to return with an events stream open", took.Round(time.Second))
	}
	if code != 0 {
		t.Errorf("Run returned %d, want 0", code)
	}
}
