package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/config"
	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/internal/redistest"
	"github.com/pallarel/pallarel/internal/servercmd"
	"github.com/pallarel/pallarel/internal/workercmd"
	"github.com/pallarel/pallarel/models"
	"github.com/pallarel/pallarel/router"
	"github.com/pallarel/pallarel/sidekiq"
)

func TestMain(m *testing.M) {
	gin.SetMode(gin.ReleaseMode) // the servers some tests start
	os.Exit(m.Run())
}

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
	// The run's status row exists (without it the job has nothing to stop
	// and ends quietly, as the Rails app's).
	gdb, err := models.Open(ctx, cfg.DB)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { models.Close(gdb) })
	if _, err := models.NewStore(gdb).CreateStatus(ctx, token, queue, 1); err != nil {
		t.Fatal(err)
	}
	idle, err := sidekiq.NewActiveJob(sidekiq.Dialect8, contract.Idle.Name, queue, token)
	if err != nil {
		t.Fatal(err)
	}
	h, ok := env.Registry.Lookup(contract.Idle.Name)
	if !ok {
		t.Fatalf("%s not registered", contract.Idle.Name)
	}
	if err := h(ctx, idle); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 1 || seen[0] != contract.Idle.Name {
		t.Errorf("middleware saw %v, want the job's push of %s", seen, contract.Idle.Name)
	}
}

// freshPostgres creates an empty database on the test PostgreSQL
// (127.0.0.1:5432, trust) and returns its DATABASE_URL; dropped at cleanup.
func freshPostgres(t *testing.T) string {
	t.Helper()
	b := make([]byte, 6)
	rand.Read(b)
	name := "pallarel_start_" + hex.EncodeToString(b)
	admin, err := models.Open(context.Background(), models.DBConfig{URL: "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", MaxOpenConns: 1})
	if err != nil {
		t.Fatalf("PostgreSQL at 127.0.0.1:5432 is required: %v", err)
	}
	if err := admin.Exec(`CREATE DATABASE "` + name + `"`).Error; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := admin.Exec(`DROP DATABASE "` + name + `" WITH (FORCE)`).Error; err != nil {
			t.Errorf("drop %s: %v", name, err)
		}
		models.Close(admin)
	})
	return "postgres://postgres@127.0.0.1:5432/" + name + "?sslmode=disable"
}

// Two web servers and two workers started at the same moment on a fresh
// PostgreSQL database all come up and stop cleanly (4 of 4 used to panic:
// they raced to create the tables, and the failed start panicked).
func TestServersAndWorkersStartTogether(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	vars := map[string]string{"REDIS_URL": db.URL(), "DATABASE_URL": freshPostgres(t), "DB_POOL": "3",
		"DATA_DIR": t.TempDir(), "LAUNCHER": "none"}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	type result struct {
		name string
		code int
		out  string
	}
	results := make(chan result, 4)
	ready := make(chan string, 2)
	start := make(chan struct{})
	for i := range 2 {
		go func() {
			var out syncBuffer
			<-start
			code := servercmd.Run(ctx, []string{"-addr", "127.0.0.1:0"}, lookup(vars), &out, &out, ready)
			results <- result{fmt.Sprint("server ", i), code, out.String()}
		}()
		go func() {
			var out syncBuffer
			<-start
			code := workercmd.Main(ctx, "test", []string{"-q", "report", "-c", "2"}, lookup(vars), &out, setup)
			results <- result{fmt.Sprint("worker ", i), code, out.String()}
		}()
	}
	close(start)
	finished := 0
	fail := func(r result) {
		t.Errorf("%s exited with %d before it was stopped:\n%s", r.name, r.code, r.out)
	}
	// Both servers listen...
	for range 2 {
		select {
		case <-ready:
		case r := <-results:
			finished++
			fail(r)
		case <-time.After(time.Minute):
			t.Fatal("servers not ready after a minute")
		}
	}
	// ...and both workers beat.
	deadline := time.Now().Add(time.Minute)
	for finished == 0 {
		// Count the processes serving "report": a worker also runs a
		// server of its own for webhooks, so the processes set alone
		// fills before the second worker has started.
		n := 0
		ids, _ := redis.Strings(db.Do(t, "SMEMBERS", "processes"), nil)
		for _, id := range ids {
			info, _ := redis.String(db.Do(t, "HGET", id, "info"), nil)
			if strings.Contains(info, `"report"`) {
				n++
			}
		}
		if n >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of 2 workers registered after a minute", n)
		}
		select {
		case r := <-results:
			finished++
			fail(r)
		case <-time.After(50 * time.Millisecond):
		}
	}
	stop()
	for ; finished < 4; finished++ {
		if r := <-results; r.code != 0 {
			t.Errorf("%s exited with %d:\n%s", r.name, r.code, r.out)
		}
	}
}

// syncBuffer is a bytes.Buffer that several goroutines may write.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
