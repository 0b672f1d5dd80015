package jobs_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/internal/e2etest"
	"github.com/pallarel/pallarel/jobs"
	"github.com/pallarel/pallarel/launcher"
	"github.com/pallarel/pallarel/models"
	"github.com/pallarel/pallarel/sidekiq"
)

// The Rails side runs on real Ruby Sidekiq 7.3.2 with ActiveJob 7.2 from
// sidekiq-peers: a Debian chroot with the package directory bind-mounted at
// the same path, sharing the network (so 127.0.0.1 Redis URLs work).
const (
	peersRoot  = "/opt/sidekiq7" // the chroot, to read files Ruby wrote
	rubyTimout = 90 * time.Second
)

// runRails runs a testdata script on Ruby 7 and returns its stdout.
func runRails(t *testing.T, script string, env ...string) string {
	t.Helper()
	e2etest.RubyDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), rubyTimout)
	defer cancel()
	cmd := exec.CommandContext(ctx, e2etest.SidekiqPeers(t), "ruby", "7", script)
	cmd.Dir = e2etest.RubyDir(t)
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("ruby 7 %s: %v\nstderr:\n%s\nstdout:\n%s", script, err, stderr.String(), stdout.String())
	}
	return stdout.String()
}

// startRailsSidekiq starts a Ruby `sidekiq` 7.3.2 server with the Rails
// app's token-queue jobs on queue, stopped with TERM at cleanup.
func startRailsSidekiq(t *testing.T, redisURL, queue string) error {
	return startRubySidekiq(t, "7", redisURL, queue)
}

// startRubySidekiq is startRailsSidekiq on Sidekiq version "7" (7.3.2) or
// "8" (8.0.6, what the Rails app runs).
func startRubySidekiq(t *testing.T, version, redisURL, queue string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*rubyTimout)
	cmd := exec.CommandContext(ctx, e2etest.SidekiqPeers(t), "sidekiq", version, "-r", "./testdata/rails_rows.rb", "-q", queue, "-c", "2", "-t", "3")
	cmd.Dir = e2etest.RubyDir(t)
	cmd.Env = append(os.Environ(), "REDIS_URL="+redisURL, "RACK_ENV=test")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	out := &e2etest.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		cancel()
		return fmt.Errorf("start ruby sidekiq: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); cancel(); close(done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			select { // never hang the suite on a process that will not die
			case <-done:
			case <-time.After(10 * time.Second):
			}
			t.Errorf("ruby sidekiq ignored TERM:\n%s", out.String())
		}
		if t.Failed() {
			t.Logf("ruby sidekiq output:\n%s", out.String())
		}
	})
	return nil
}

// TestRailsEnqueuesSplit: the Rails controller's perform_later on real
// ActiveJob + Sidekiq 7, the Go pipeline does the rest.
func TestRailsEnqueuesSplit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	id := e.newReport(models.ReportTypeXLSX)
	out := runRails(t, "./testdata/rails_enqueue.rb", "REDIS_URL="+e.db.URL(),
		"CSV_TEXT="+outputCSV, "REPORT_TYPE=xlsx", fmt.Sprintf("REPORT_ID=%d", id))
	if !strings.Contains(out, "RAILS_RESULT ") {
		t.Fatalf("enqueue script: %s", out)
	}
	rep := e.completed(id, 30*time.Second)
	if rep.Count != len(outputRows) {
		t.Fatalf("report: %+v", rep)
	}
	checkOutputXLSX(t, e.readZip(rep.File))
}

// TestRailsRunsRows: the Go split pushes Report::ProcessCsvRowJob to the
// token queue and the launcher starts a real Ruby sidekiq there, which
// gets the arguments the Rails job reads by position: the plain row_hash,
// since a Ruby worker serves the queue when the rows are pushed
// (ROW_CELLS=auto pushes no reference to a Ruby-consumed run).
func TestRailsRunsRows(t *testing.T) {
	t.Parallel()
	e2etest.RubyDir(t)
	var e *env
	e = newEnvWith(t, envOptions{launch: func(ctx context.Context, req launcher.Request) error {
		if err := startRailsSidekiq(t, e.db.URL(), req.Queue); err != nil {
			return err
		}
		return waitServes(ctx, e, req.Queue)
	}})
	id := e.newReport(models.ReportTypeXLSX)
	e.split(outputCSV, "xlsx", id)

	type rowRun struct {
		JID     string            `json:"jid"`
		Args    []json.RawMessage `json:"args"`
		Keys    []string          `json:"keys"`
		Classes []string          `json:"classes"`
	}
	var runs []rowRun
	waitFor(t, 60*time.Second, "Ruby ran every row", func() bool {
		n, _ := redis.Int(e.db.Do(t, "LLEN", "rails:rows"), nil)
		return n >= len(outputRows)
	})
	raw, err := redis.ByteSlices(e.db.Do(t, "LRANGE", "rails:rows", 0, -1), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range raw {
		var r rowRun
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		runs = append(runs, r)
	}
	rep, err := e.models.ReportByID(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	token := rep.Token
	path := "/tmp/reports/" + token
	t.Cleanup(func() { _ = os.RemoveAll(filepath.Join(peersRoot, path)) })
	if len(runs) != len(outputRows) {
		t.Fatalf("%d row runs: %+v", len(runs), runs)
	}
	seen := map[string]bool{}
	for _, r := range runs {
		var hash map[string]string
		if len(r.Args) != 5 || json.Unmarshal(r.Args[0], &hash) != nil {
			t.Fatalf("args: %s", r.Args)
		}
		if strings.Join(r.Keys, ",") != strings.Join(outputHeaders, ",") {
			t.Errorf("row_hash keys %q, want CSV order %q", r.Keys, outputHeaders)
		}
		want := fmt.Sprintf(`["xlsx",%d,%q,%q]`, id, path, token)
		got := "[" + string(r.Args[1]) + "," + string(r.Args[2]) + "," + string(r.Args[3]) + "," + string(r.Args[4]) + "]"
		if got != want {
			t.Errorf("args 1-4: %s, want %s", got, want)
		}
		if strings.Join(r.Classes, ",") != "Hash,String,Integer,String,String" {
			t.Errorf("Ruby argument classes: %v", r.Classes)
		}
		var match map[string]string
		for _, w := range outputRows {
			if w["個別識別番号"] == hash["個別識別番号"] {
				match = w
			}
		}
		if match == nil || fmt.Sprint(hash) != fmt.Sprint(match) {
			t.Errorf("row_hash %q matches no CSV row", hash)
			continue
		}
		seen[hash["個別識別番号"]] = true
		// The Ruby job wrote its file under the path argument.
		body, err := os.ReadFile(filepath.Join(peersRoot, path, hash["個別識別番号"]+".txt"))
		wantBody := "個別識別番号: " + match["個別識別番号"] + "\n保険者名: " + match["保険者名"] + "\n年度: " + match["年度"]
		if err != nil || string(body) != wantBody {
			t.Errorf("file of %s: %q (%v), want %q", hash["個別識別番号"], body, err, wantBody)
		}
	}
	if len(seen) != len(outputRows) {
		t.Errorf("rows run: %v", seen)
	}
	// The finalizer went to the token queue too, with the Rails arguments.
	waitFor(t, 30*time.Second, "Ruby ran the finalizer", func() bool {
		n, _ := redis.Int(e.db.Do(t, "LLEN", "rails:finalize"), nil)
		return n >= 1
	})
	fin, _ := redis.Bytes(e.db.Do(t, "LINDEX", "rails:finalize", 0), nil)
	var f struct {
		Args []json.RawMessage `json:"args"`
	}
	if err := json.Unmarshal(fin, &f); err != nil || len(f.Args) != 7 {
		t.Fatalf("finalize: %s", fin)
	}
	want := fmt.Sprintf(`%q,"xlsx",%d,%q`, path, id, token)
	if got := string(f.Args[0]) + "," + string(f.Args[1]) + "," + string(f.Args[2]) + "," + string(f.Args[3]); got != want {
		t.Errorf("finalize args: %s, want %s", got, want)
	}
}

// waitServes waits until a live process serves queue, and past the
// pipeline's one-second cache of the processes.
func waitServes(ctx context.Context, e *env, queue string) error {
	deadline := time.Now().Add(rubyTimout)
	for time.Now().Before(deadline) {
		procs, err := e.api.Processes(ctx)
		if err != nil {
			return err
		}
		for _, p := range procs {
			if slices.Contains(p.Queues, queue) {
				time.Sleep(1100 * time.Millisecond)
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("no process serves %s after %s", queue, rubyTimout)
}

// TestRailsRowRefFailsLoudly: a reference row job a Ruby worker of the app
// fetches anyway (ROW_CELLS=ref while the app's Sidekiq serves the queue)
// does not run as if the reference were the row: its sixth argument makes
// the app's perform raise ArgumentError, Ruby sends it to the dead set
// (ROW_JOB_RETRY=0 here), and Go's dead-letter monitor records each such
// row as failed, so the run accounts for it ("Retry failed rows" runs it
// again on Go). ROW_CELLS=ref promises no cell in Redis, so the rows are
// not sent back inline as with auto (TestRailsJoinsReferenceRun).
func TestRailsRowRefFailsLoudly(t *testing.T) {
	t.Parallel()
	e2etest.RubyDir(t)
	var e *env
	zero := 0
	e = newEnvWith(t, envOptions{
		launch: func(ctx context.Context, req launcher.Request) error {
			if err := startRailsSidekiq(t, e.db.URL(), req.Queue); err != nil {
				return err
			}
			return waitServes(ctx, e, req.Queue)
		},
		deps: func(d *jobs.Deps) { d.RowCells, d.RowRetries = jobs.RowCellsRef, &zero },
	})
	ctx := context.Background()
	id := e.newReport(models.ReportTypeXLSX)
	e.split(outputCSV, "xlsx", id)
	waitFor(t, 60*time.Second, "Ruby killed every row", func() bool {
		n := 0
		for _, j := range e.dead() {
			if j.StringField("error_class") == "ArgumentError" && strings.Contains(j.StringField("error_message"), "given 6, expected 5") {
				n++
			}
		}
		return n == len(outputRows)
	})
	if n, _ := redis.Int(e.db.Do(t, "LLEN", "rails:rows"), nil); n != 0 {
		t.Fatalf("Ruby ran %d reference rows as rows", n)
	}
	recorded, err := e.pipeline.RecordDeadRows(ctx)
	if err != nil || recorded != len(outputRows) {
		t.Fatalf("RecordDeadRows: %d, %v; want %d", recorded, err, len(outputRows))
	}
	rep, err := e.models.ReportByID(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	token := rep.Token
	if n := e.ledgerCount(token); n != len(outputRows) {
		t.Fatalf("ledger %d, want %d", n, len(outputRows))
	}
	waitFor(t, 10*time.Second, "the database counts every row failed", func() bool {
		return e.status(token).FailedCount == len(outputRows)
	})
}

// TestRailsJoinsReferenceRun: Ruby Sidekiq 8.0.6 with the app's row job
// joins a run (ROW_CELLS=auto) whose rows were all pushed as references
// while only Go was to run them. The app's perform(row_hash, type,
// report_id, path, token) refuses each with ArgumentError, which Ruby
// records in the job it sends to the dead set (no retries) or the retry
// set (the app's retry: 3). The dead-letter monitor's pass sends each back
// once with the app's row_hash, Ruby runs every row once, and no row is
// recorded failed: nobody has to press "Retry failed rows".
func TestRailsJoinsReferenceRun(t *testing.T) {
	t.Parallel()
	e2etest.RubyDir(t)
	zero := 0
	for _, c := range []struct {
		name    string
		retries *int
		set     string
	}{{"dead", &zero, "dead"}, {"retry", nil, "retry"}} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newEnvWith(t, envOptions{
				launch: func(context.Context, launcher.Request) error { return nil }, // Ruby comes later
				deps:   func(d *jobs.Deps) { d.RowRetries = c.retries },
			})
			ctx := context.Background()
			id := e.newReport(models.ReportTypeXLSX)
			e.split(outputCSV, "xlsx", id)
			var token string
			waitFor(t, 30*time.Second, "the split gave the run a token", func() bool {
				rep, err := e.models.ReportByID(ctx, id)
				token = rep.Token
				return err == nil && token != ""
			})
			queue := e.queue(token)
			var queued [][]byte // the row jobs
			waitFor(t, 30*time.Second, "every row queued", func() bool {
				raw, err := redis.ByteSlices(e.db.Do(t, "LRANGE", "queue:"+queue, 0, -1), nil)
				if err != nil {
					t.Fatal(err)
				}
				queued = queued[:0]
				for _, b := range raw {
					if bytes.Contains(b, []byte(`"Report::ProcessCsvRowJob"`)) {
						queued = append(queued, b)
					}
				}
				return len(queued) == len(outputRows)
			})
			for _, b := range queued {
				if !bytes.Contains(b, []byte(`"pallarel:row-ref:v1"`)) || bytes.Contains(b, []byte("全国健康保険協会")) {
					t.Fatalf("not a reference row job: %s", b)
				}
			}
			if err := startRubySidekiq(t, "8", e.db.URL(), queue); err != nil {
				t.Fatal(err)
			}
			var refused []*sidekiq.Job
			waitFor(t, 60*time.Second, "Ruby refused every row", func() bool {
				entries, err := e.api.SetEntries(ctx, sidekiq.SetName(c.set), 0, 100)
				if err != nil {
					t.Fatal(err)
				}
				refused = refused[:0]
				for _, en := range entries {
					if en.Job != nil && en.Job.StringField("error_class") == "ArgumentError" {
						refused = append(refused, en.Job)
					}
				}
				return len(refused) == len(outputRows)
			})
			t.Logf("as Ruby 8.0.6 wrote it in %s: %s", c.set, refused[0].Raw())
			if msg := refused[0].StringField("error_message"); msg != "wrong number of arguments (given 6, expected 5)" {
				t.Fatalf("error_message %q", msg)
			}
			if n := e.redisInt("LLEN", "rails:rows"); n != 0 {
				t.Fatalf("Ruby ran %d reference rows as rows", n)
			}
			recorded, err := e.pipeline.RecordDeadRows(ctx)
			if err != nil || recorded != 0 {
				t.Fatalf("RecordDeadRows: %d, %v; want 0 (the rows go back inline)", recorded, err)
			}
			if n := e.redisInt("ZCARD", c.set); n != 0 {
				t.Fatalf("%d jobs left in %s", n, c.set)
			}
			waitFor(t, 60*time.Second, "Ruby ran every row", func() bool {
				return e.redisInt("LLEN", "rails:rows") >= len(outputRows)
			})
			// A second pass finds nothing to send back or to record.
			if n, err := e.pipeline.RecordDeadRows(ctx); err != nil || n != 0 {
				t.Fatalf("second RecordDeadRows: %d, %v", n, err)
			}
			ran, err := redis.ByteSlices(e.db.Do(t, "LRANGE", "rails:rows", 0, -1), nil)
			if err != nil {
				t.Fatal(err)
			}
			path := "/tmp/reports/" + token
			t.Cleanup(func() { _ = os.RemoveAll(filepath.Join(peersRoot, path)) })
			seen := map[string]int{}
			for _, b := range ran {
				var r struct {
					Args    []json.RawMessage `json:"args"`
					Keys    []string          `json:"keys"`
					Classes []string          `json:"classes"`
				}
				var hash map[string]string
				if err := json.Unmarshal(b, &r); err != nil || len(r.Args) != 5 || json.Unmarshal(r.Args[0], &hash) != nil {
					t.Fatalf("row run: %s", b)
				}
				if strings.Join(r.Keys, ",") != strings.Join(outputHeaders, ",") || strings.Join(r.Classes, ",") != "Hash,String,Integer,String,String" {
					t.Errorf("row run: keys %q, classes %q", r.Keys, r.Classes)
				}
				if want := fmt.Sprintf(`"xlsx",%d,%q,%q`, id, path, token); string(r.Args[1])+","+string(r.Args[2])+","+string(r.Args[3])+","+string(r.Args[4]) != want {
					t.Errorf("args 1-4 of %s, want %s", b, want)
				}
				match := false
				for _, w := range outputRows {
					match = match || fmt.Sprint(w) == fmt.Sprint(hash)
				}
				if !match {
					t.Errorf("row_hash %q is no CSV row", hash)
				}
				seen[hash["個別識別番号"]]++
			}
			for _, w := range outputRows {
				if n := seen[w["個別識別番号"]]; n != 1 {
					t.Errorf("row %s ran %d times, want once", w["個別識別番号"], n)
				}
			}
			if st := e.status(token); st.FailedCount != 0 {
				t.Errorf("failed rows: %d", st.FailedCount)
			}
			if n := e.ledgerCount(token); n != 0 {
				t.Errorf("ledger holds %d rows: none was Go's to record", n)
			}
		})
	}
}
