package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/internal/e2etest"
	"github.com/pallarel/pallarel/internal/redistest"
	"github.com/pallarel/pallarel/sidekiq"
)

// sidekiqPeers runs real Ruby Sidekiq 6.4.1 and 7.3.2 (see its header).

// rubyTimeout bounds one Ruby script.
const rubyTimeout = 90 * time.Second

// rubyStats runs testdata/stats.rb with Ruby Sidekiq version ("6" or "7")
// on redisURL and returns the "sidekiq" object of Sidekiq::Web's /stats.
// sidekiq-peers bind-mounts the working directory (this package) into the
// Sidekiq 7 chroot, so the script must live under it.
func rubyStats(t *testing.T, version, redisURL string) map[string]float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), rubyTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, e2etest.SidekiqPeers(t), "ruby", version, "testdata/stats.rb")
	cmd.Dir = e2etest.RubyDir(t)
	cmd.Env = append(os.Environ(), "REDIS_URL="+redisURL)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("sidekiq-peers ruby %s testdata/stats.rb: %v (ctx: %v)\nstderr:\n%s\nstdout:\n%s",
			version, err, ctx.Err(), stderr.String(), stdout.String())
	}
	for _, line := range strings.Split(stdout.String(), "\n") {
		if rest, ok := strings.CutPrefix(line, "E2E_RESULT "); ok {
			var res struct {
				Version string `json:"version"`
				Stats   struct {
					Sidekiq map[string]float64 `json:"sidekiq"`
				} `json:"stats"`
			}
			if err := json.Unmarshal([]byte(rest), &res); err != nil {
				t.Fatalf("stats.rb result %s: %v", rest, err)
			}
			if !strings.HasPrefix(res.Version, version+".") {
				t.Fatalf("asked for Sidekiq %s, ran %s", version, res.Version)
			}
			return res.Stats.Sidekiq
		}
	}
	t.Fatalf("stats.rb printed no result:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	return nil
}

// cardRE reads one number of the Go dashboard: <div class="card">Name<b ...>N</b>.
var cardRE = regexp.MustCompile(`<div class="card">(\w+)<b[^>]*>(\d+)</b>`)

// goDashboard reads the Go dashboard's cards from GET /sidekiq.
func goDashboard(t *testing.T, base string) map[string]float64 {
	t.Helper()
	resp, body := e2etest.Get(t, base+"/sidekiq", "text/html")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /sidekiq: %s", resp.Status)
	}
	out := map[string]float64{}
	for _, m := range cardRE.FindAllSubmatch(body, -1) {
		n, _ := strconv.ParseFloat(string(m[2]), 64)
		out[strings.ToLower(string(m[1]))] = n
	}
	return out
}

// TestDashboardMatchesRubyWebUI puts Go-written data in one Redis database
// (stats from jobs a Go server ran, retry, dead and scheduled entries, a
// queue with jobs, a running Go process) and checks that the Go dashboard
// and Ruby's Sidekiq::Web (/stats, Sidekiq 6.4.1 and 7.3.2) show the same
// numbers.
func TestDashboardMatchesRubyWebUI(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	// The running Go process: the report worker of a server with -workers.
	srv := e2etest.Start(t, Run, map[string]string{"REDIS_URL": db.URL(), "DATA_DIR": t.TempDir()}, "-workers")

	// A Go server runs jobs that succeed, fail (to the retry set, next try
	// in about 20 minutes so no poller moves them during the test) and die.
	reg := sidekiq.NewRegistry()
	must(t, reg.Register(func(context.Context, *sidekiq.Job) error { return nil }, "E2E::OkJob"))
	must(t, reg.Register(func(context.Context, *sidekiq.Job) error { return errors.New("boom") }, "E2E::FailJob"))
	must(t, reg.Register(func(context.Context, *sidekiq.Job) error { return sidekiq.Kill(errors.New("hopeless")) }, "E2E::KillJob"))
	gsLog := &e2etest.Buffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("Go server log:\n%s", gsLog)
		}
	})
	gs, err := sidekiq.NewServer(db.Pool, reg, sidekiq.Options{Queues: []sidekiq.QueueWeight{{Name: "e2e"}}, Concurrency: 2,
		Logger: slog.New(slog.NewTextHandler(gsLog, nil))})
	must(t, err)
	ran := make(chan error, 1)
	go func() { ran <- gs.Run(context.Background()) }()
	client := sidekiq.NewClient(db.Pool, sidekiq.ClientOptions{})
	push := func(class, queue string, at time.Time, fields map[string]any) {
		t.Helper()
		j, err := sidekiq.NewJob(class, "引数", 1)
		must(t, err)
		j.Queue, j.At = queue, at
		for k, v := range fields {
			must(t, j.SetField(k, v))
		}
		_, err = client.Push(t.Context(), j)
		must(t, err)
	}
	for range 3 {
		push("E2E::OkJob", "e2e", time.Time{}, nil)
	}
	for range 2 {
		push("E2E::FailJob", "e2e", time.Time{}, map[string]any{"retry_count": 5, "error_message": "before"})
	}
	push("E2E::KillJob", "e2e", time.Time{}, nil)
	// An unknown class is retried as in Ruby (NameError); retry 0 sends it
	// to the dead set at once.
	nosuch, err := sidekiq.NewJob("E2E::NoSuchJob", "引数", 1)
	must(t, err)
	nosuch.Queue, nosuch.Retry = "e2e", json.RawMessage("0")
	_, err = client.Push(t.Context(), nosuch)
	must(t, err)
	waitFor(t, 30*time.Second, "2 retries and 2 dead jobs", func() bool {
		r, _ := redis.Int(db.Do(t, "ZCARD", "retry"), nil)
		d, _ := redis.Int(db.Do(t, "ZCARD", "dead"), nil)
		q, _ := redis.Int(db.Do(t, "LLEN", "queue:e2e"), nil)
		return r == 2 && d == 2 && q == 0
	})
	gs.Stop() // flushes its stats and leaves the processes set
	select {
	case err := <-ran:
		must(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("Go server did not stop within 30s")
	}
	for range 2 {
		push("E2E::OkJob", "e2e", time.Now().Add(time.Hour), nil)
	}
	for range 4 {
		push("E2E::OkJob", "waiting", time.Time{}, nil)
	}
	// The server's report worker and its webhook server (the webhook
	// queue has processors of its own) are capsules of one live process.
	waitFor(t, 10*time.Second, "one live process", func() bool {
		n, _ := redis.Int(db.Do(t, "SCARD", "processes"), nil)
		return n == 1
	})

	goNums := goDashboard(t, srv.URL)
	want := map[string]float64{"scheduled": 2, "retries": 2, "dead": 2, "enqueued": 4, "processes": 1, "busy": 0}
	for k, v := range want {
		if goNums[k] != v {
			t.Errorf("Go dashboard %s = %v, want %v (all: %v)", k, goNums[k], v, goNums)
		}
	}
	if goNums["processed"] < 3 || goNums["failed"] < 2 {
		t.Errorf("Go dashboard processed/failed = %v/%v, want at least 3/2", goNums["processed"], goNums["failed"])
	}
	for _, version := range []string{"6", "7"} {
		rb := rubyStats(t, version, db.URL())
		for _, k := range []string{"processed", "failed", "scheduled", "retries", "dead", "enqueued", "processes", "busy"} {
			if _, ok := rb[k]; !ok {
				t.Errorf("Ruby %s /stats has no %s: %v", version, k, rb)
				continue
			}
			if rb[k] != goNums[k] {
				t.Errorf("%s: Ruby Sidekiq %s Web UI says %v, Go dashboard %v", k, version, rb[k], goNums[k])
			}
		}
		t.Logf("Sidekiq %s /stats: %v; Go dashboard: %v", version, rb, goNums)
	}
	if code := srv.Stop(t); code != 0 {
		t.Errorf("Run returned %d", code)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(fmt.Errorf("arrange: %w", err))
	}
}
