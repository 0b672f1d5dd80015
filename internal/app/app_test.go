package app

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/pallarel/pallarel/config"
	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/internal/redistest"
	"github.com/pallarel/pallarel/router"
	"github.com/pallarel/pallarel/sidekiq"
)

// testConfig is the configuration the binaries would read from env, on
// this test's Redis database, SQLite and local storage in a temp dir.
func testConfig(t *testing.T, env map[string]string) config.Config {
	t.Helper()
	vars := map[string]string{
		"REDIS_URL": redistest.New(t).URL(),
		"DATA_DIR":  t.TempDir(),
		"LAUNCHER":  "none",
	}
	for k, v := range env {
		vars[k] = v
	}
	cfg, err := config.Load(func(k string) (string, bool) { v, ok := vars[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// A start that fails after Redis is open returns the error (it used to
// panic on a nil receiver while releasing what it had opened).
func TestOpenFailureReturnsError(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, map[string]string{"DATABASE_URL": "mysql://root:hunter2@127.0.0.1:1/x?timeout=1s"})
	var logs bytes.Buffer
	a, err := Open(context.Background(), cfg, slog.New(slog.NewTextHandler(&logs, nil)), Options{})
	if err == nil {
		a.Close()
		t.Fatal("Open succeeded on a closed database port")
	}
	if a != nil {
		t.Errorf("Open returned an App with its error: %+v", a)
	}
	if msg := err.Error(); !strings.Contains(msg, "127.0.0.1:1") || strings.Contains(msg, "hunter2") {
		t.Errorf("error = %q, want the database address without its password", msg)
	}
	var nilApp *App
	if err := nilApp.Close(); err != nil {
		t.Errorf("Close of a nil App: %v", err)
	}
}

// recorder is a client middleware that notes the classes it sees.
type recorder struct {
	mu      sync.Mutex
	classes []string
}

func (r *recorder) middleware(ctx context.Context, job *sidekiq.Job) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.classes = append(r.classes, job.Class)
	return nil
}

func (r *recorder) saw(class string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.classes {
		if c == class {
			return true
		}
	}
	return false
}

// Options.ClientMiddleware reaches every push of the process: the web
// server's (App.Client) and the pipeline's own, through one client that
// also keeps the pipeline's queue isolation.
func TestOpenClientMiddlewareSeesEveryPush(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var rec recorder
	a, err := Open(ctx, testConfig(t, nil), slog.New(slog.DiscardHandler), Options{ClientMiddleware: []sidekiq.ClientMiddleware{rec.middleware}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })

	job, err := sidekiq.NewJob("Pallarel::SomeJob", 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Client.Push(ctx, job); err != nil {
		t.Fatal(err)
	}
	if !rec.saw("Pallarel::SomeJob") {
		t.Error("middleware did not see a push through App.Client")
	}

	// The pipeline pushes with the same client: a cancel schedules its
	// second cleanup.
	token := router.NewToken()
	queue, err := a.Router.For(token)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Models.CreateStatus(ctx, token, queue, 0); err != nil {
		t.Fatal(err)
	}
	if err := a.Pipeline.Cancel(ctx, token); err != nil {
		t.Fatal(err)
	}
	if !rec.saw(contract.CancelCleanup.Name) {
		t.Errorf("middleware did not see the pipeline's push; saw %v", rec.classes)
	}

	// The isolation check still runs after the given middleware.
	row, err := sidekiq.NewJob(contract.Row.Name, "a", "b", "c", "d", token)
	if err != nil {
		t.Fatal(err)
	}
	row.Queue = "default"
	if _, err := a.Client.Push(ctx, row); err == nil {
		t.Error("a row job for another queue was pushed")
	}
}

// An in-process worker asked to start before the app is wired says so
// instead of dereferencing a nil pipeline.
func TestInProcessStartBeforeWiring(t *testing.T) {
	t.Parallel()
	p := &InProcess{Log: slog.New(slog.DiscardHandler)}
	if err := p.Start("report", []sidekiq.QueueWeight{{Name: "report"}}, 0); err == nil {
		t.Error("Start without a pipeline succeeded")
	}
}
