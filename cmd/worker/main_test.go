package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/pallarel/pallarel/config"
	"github.com/pallarel/pallarel/internal/redistest"
	"github.com/pallarel/pallarel/internal/workercmd"
	"github.com/pallarel/pallarel/jobs"
	"github.com/pallarel/pallarel/router"
	"github.com/pallarel/pallarel/sidekiq"
)

func lookup(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

// A worker whose database is unreachable exits with status 1 and says why,
// without the password (it used to panic inside app.Open).
func TestWorkerStartFailureExits(t *testing.T) {
	t.Parallel()
	vars := map[string]string{
		"REDIS_URL":    redistest.New(t).URL(),
		"DATABASE_URL": "mysql://root:hunter2@127.0.0.1:1/x?timeout=1s",
		"DATA_DIR":     t.TempDir(),
		"LAUNCHER":     "none",
	}
	var stderr bytes.Buffer
	code := workercmd.Main(context.Background(), "test", []string{"-q", "report"}, lookup(vars), &stderr, setup)
	out := stderr.String()
	if code != 1 {
		t.Errorf("exit %d, want 1; stderr:\n%s", code, out)
	}
	if !strings.Contains(out, "worker cannot start") || !strings.Contains(out, "127.0.0.1:1") || strings.Contains(out, "hunter2") || strings.Contains(out, "panic") {
		t.Errorf("stderr = %q, want the database named, no password, no panic", out)
	}
}

// A client middleware a worker's Setup puts in Options.ClientMiddleware
// runs on the pushes of the jobs this worker runs (it used to reach only
// the server's retries).
func TestWorkerClientMiddlewareSeesJobPushes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := redistest.New(t)
	cfg, err := config.Load(lookup(map[string]string{"REDIS_URL": db.URL(), "DATA_DIR": t.TempDir(), "LAUNCHER": "none"}))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []string
	opts := &sidekiq.Options{ClientMiddleware: []sidekiq.ClientMiddleware{func(ctx context.Context, j *sidekiq.Job) error {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, j.HandlerClass())
		return nil
	}}}
	env := &workercmd.Env{Config: cfg, Pool: db.Pool, Registry: sidekiq.NewRegistry(), Options: opts,
		Logger: slog.New(slog.DiscardHandler), Lookup: lookup(nil)}
	cleanup, err := setup(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)

	// An IdleShutdownJob that finds work left in its token's queue pushes
	// itself again for later.
	token := router.NewToken()
	r, err := router.New(cfg.QueueHexLen)
	if err != nil {
		t.Fatal(err)
	}
	queue, err := r.For(token)
	if err != nil {
		t.Fatal(err)
	}
	other, err := sidekiq.NewJob("Pallarel::Other")
	if err != nil {
		t.Fatal(err)
	}
	other.Queue = queue
	// The queue holds the idle job itself (run here without being popped)
	// and one more.
	if _, err := sidekiq.NewClient(db.Pool, sidekiq.ClientOptions{}).PushBulk(ctx, []*sidekiq.Job{other, other.Clone()}); err != nil {
		t.Fatal(err)
	}
	idle, err := sidekiq.NewActiveJob(sidekiq.Dialect8, jobs.IdleClass, queue, token)
	if err != nil {
		t.Fatal(err)
	}
	h, ok := env.Registry.Lookup(jobs.IdleClass)
	if !ok {
		t.Fatalf("%s not registered", jobs.IdleClass)
	}
	if err := h(ctx, idle); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 1 || seen[0] != jobs.IdleClass {
		t.Errorf("middleware saw %v, want the job's push of %s", seen, jobs.IdleClass)
	}
}
