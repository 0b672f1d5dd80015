package jobs_test

import (
	"archive/zip"
	"bytes"
	"cmp"
	"context"
	"encoding/csv"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/pallarel/pallarel/internal/egress"
	"github.com/pallarel/pallarel/internal/redistest"
	"github.com/pallarel/pallarel/jobs"
	"github.com/pallarel/pallarel/launcher"
	"github.com/pallarel/pallarel/models"
	"github.com/pallarel/pallarel/render"
	"github.com/pallarel/pallarel/router"
	"github.com/pallarel/pallarel/run/webhook"
	"github.com/pallarel/pallarel/sidekiq"
	"github.com/pallarel/pallarel/storage"
)

// env is a whole pipeline on a real Redis, SQLite and a store: a "report"
// worker and, per token, an in-process token worker started by the launcher.
type env struct {
	t        *testing.T
	db       *redistest.DB
	models   *models.Store
	store    storage.Store
	pipeline *jobs.Pipeline
	client   *sidekiq.Client
	api      *sidekiq.API
	router   router.Router
	opts     envOptions

	completedMarks atomic.Int32 // MarkReportCompleted calls

	mu      sync.Mutex
	workers map[string]context.CancelFunc
	started []string
	stopped []string
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// envOptions varies the pipeline a test runs; the zero value is the default
// env (local store, text/csv/xlsx renderers, in-process token workers).
type envOptions struct {
	store     storage.Store     // nil: a local store in a temp dir
	renderers []render.Renderer // added to xlsx, text and csv
	batchSize int               // split push batch; 0 for the default
	workers   int               // token worker concurrency; default 4
	timeout   time.Duration     // worker shutdown grace; default 25 s
	// launch replaces the in-process token worker (e.g. a Ruby sidekiq);
	// nil runs a Go token worker.
	launch func(ctx context.Context, req launcher.Request) error
	// deps adjusts the pipeline's dependencies (webhook settings...).
	deps func(*jobs.Deps)
	// redis is the Redis the pipeline uses; nil: a database of the
	// package's redis-server (redistest.New).
	redis *redistest.DB
}

func newEnv(t *testing.T, store storage.Store) *env {
	return newEnvWith(t, envOptions{store: store})
}

func newEnvWith(t *testing.T, o envOptions) *env {
	t.Helper()
	if o.store == nil {
		local, err := storage.NewLocal(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		o.store = local
	}
	if o.redis == nil {
		o.redis = redistest.New(t)
	}
	e := &env{t: t, db: o.redis, store: o.store, opts: o, workers: map[string]context.CancelFunc{}}
	gdb, err := models.Open(context.Background(), models.DBConfig{URL: "sqlite://" + filepath.Join(t.TempDir(), "t.sqlite3")})
	if err != nil {
		t.Fatal(err)
	}
	if err := models.Migrate(context.Background(), gdb); err != nil {
		t.Fatal(err)
	}
	// Count MarkReportCompleted calls, to prove finalization happens once.
	if err := gdb.Callback().Update().After("gorm:update").Register("test:count_completed", func(db *gorm.DB) {
		if m, ok := db.Statement.Dest.(map[string]any); ok && m["status"] == models.ReportCompleted && db.Error == nil {
			e.completedMarks.Add(1)
		}
	}); err != nil {
		t.Fatal(err)
	}
	e.models = models.NewStore(gdb)
	e.client = sidekiq.NewClient(e.db.Pool, sidekiq.ClientOptions{})
	rt, err := router.New(16)
	if err != nil {
		t.Fatal(err)
	}
	e.router = rt
	regs := render.NewRegistry()
	for _, r := range append([]render.Renderer{render.NewXLSX(), render.Text{}, render.CSV{}}, o.renderers...) {
		if err := regs.Register(r); err != nil {
			t.Fatal(err)
		}
	}
	e.api = sidekiq.NewAPI(e.db.Pool, sidekiq.Dialect8)
	deps := jobs.Deps{
		Pool: e.db.Pool, Client: e.client, API: e.api,
		Store: o.store, DB: e.models, Router: rt, Renderers: regs, Logger: quiet(),
		Launcher:         &launcher.Func{LaunchFunc: e.launch, StopFunc: e.stop},
		FinalizeInterval: 200 * time.Millisecond, BatchSize: o.batchSize,
		// The tests' receivers listen on 127.0.0.1 (httptest).
		WebhookEgress: egress.Policy{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}},
	}
	if o.deps != nil {
		o.deps(&deps)
	}
	e.pipeline, err = jobs.New(deps)
	if err != nil {
		t.Fatal(err)
	}
	e.runWorker("report", []sidekiq.QueueWeight{{Name: "report"}, {Name: "default"}}, 4)
	e.runWorker("webhook", []sidekiq.QueueWeight{{Name: webhook.Queue}}, webhook.Concurrency)
	return e
}

func (e *env) runWorker(name string, queues []sidekiq.QueueWeight, concurrency int) {
	reg := sidekiq.NewRegistry()
	if err := e.pipeline.Register(reg); err != nil {
		e.t.Fatal(err)
	}
	opts := sidekiq.Options{Queues: queues, Concurrency: concurrency, Logger: quiet(), Timeout: e.opts.timeout,
		HeartbeatInterval: 200 * time.Millisecond, ProcessTTL: 2 * time.Second, PollAverage: 100 * time.Millisecond}
	e.pipeline.ServerOptions(&opts)
	srv, err := sidekiq.NewServer(e.db.Pool, reg, opts)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Run(ctx); close(done) }()
	e.mu.Lock()
	e.workers[name] = func() { cancel(); <-done }
	e.mu.Unlock()
	e.t.Cleanup(func() { cancel(); <-done })
}

// stopWorker stops the named worker and waits until it has shut down.
func (e *env) stopWorker(name string) {
	e.mu.Lock()
	stop := e.workers[name]
	delete(e.workers, name)
	e.mu.Unlock()
	if stop != nil {
		stop()
	}
}

func (e *env) launch(ctx context.Context, req launcher.Request) (launcher.Task, error) {
	e.mu.Lock()
	e.started = append(e.started, req.Queue)
	e.mu.Unlock()
	if e.opts.launch != nil {
		if err := e.opts.launch(ctx, req); err != nil {
			return launcher.Task{}, err
		}
	} else {
		e.runWorker(req.Queue, []sidekiq.QueueWeight{{Name: req.Queue}}, cmp.Or(e.opts.workers, 4))
	}
	return launcher.Task{ID: "local-" + req.Queue, StartedAt: time.Now()}, nil
}

func (e *env) stop(ctx context.Context, task launcher.Task, reason string) error {
	e.mu.Lock()
	e.stopped = append(e.stopped, task.ID)
	e.mu.Unlock()
	return nil
}

func (e *env) stoppedCount() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.stopped)
}

func (e *env) waitReport(id int64, d time.Duration) models.ClientReport {
	e.t.Helper()
	deadline := time.Now().Add(d)
	for {
		r, err := e.models.ReportByID(context.Background(), id)
		if err == nil && (r.Status == models.ReportCompleted || r.Status == models.ReportFailed) {
			return r
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("report %d not finished after %s: %+v %v", id, d, r, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *env) readZip(key string) map[string][]byte {
	e.t.Helper()
	rc, err := e.store.Open(context.Background(), key)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rc.Close()
	data, _ := io.ReadAll(rc)
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, f := range zr.File {
		r, _ := f.Open()
		out[f.Name], _ = io.ReadAll(r)
		r.Close()
	}
	return out
}

func manifest(t *testing.T, b []byte) [][]string {
	t.Helper()
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	recs, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

const japaneseCSV = "個別識別番号,保険者名,年度\r\nA-0001,東京保険,2024\r\nA-0002,\"大阪\n保険\",2025\r\nA-0003,名古屋保険\r\nA-0004,札幌保険,2026\r\n"

func TestPipelineInlineCSVToZip(t *testing.T) {
	store, err := storage.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, store)
	ctx := context.Background()
	rep := models.ClientReport{ReportType: models.ReportTypeXLSX}
	if err := e.models.CreateReport(ctx, &rep); err != nil {
		t.Fatal(err)
	}
	// As the Rails controller enqueues it: the whole CSV inline.
	j, err := jobs.NewSplitJob(sidekiq.Dialect8, japaneseCSV, "text", rep.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.Push(ctx, j); err != nil {
		t.Fatal(err)
	}
	done := e.waitReport(rep.ID, 30*time.Second)
	if done.Status != models.ReportCompleted || done.File != "reports/"+done.Token+".zip" || done.Count != 3 {
		t.Fatalf("report: %+v", done)
	}
	files := e.readZip(done.File)
	m := manifest(t, files["manifest.csv"])
	if len(m) != 5 || strings.Join(m[0], ",") != "row,file,status,error" {
		t.Fatalf("manifest: %q", m)
	}
	statuses := map[string]string{}
	for _, rec := range m[1:] {
		statuses[rec[0]] = rec[2]
		if rec[2] == "done" {
			body := string(files[rec[1]])
			if !strings.Contains(body, "保険") {
				t.Errorf("row %s file %s: %q", rec[0], rec[1], body)
			}
		}
	}
	if statuses["1"] != "done" || statuses["2"] != "done" || statuses["3"] != "failed" || statuses["4"] != "done" {
		t.Fatalf("row statuses: %v (%q)", statuses, m)
	}
	st, err := e.models.StatusByToken(ctx, done.Token)
	if err != nil {
		t.Fatal(err)
	}
	q, _ := router.New(16)
	wantQ, _ := q.For(done.Token)
	if st.TotalCount != 4 || st.DoneCount != 3 || st.FailedCount != 1 || st.FinalizedAt == nil || st.QueueName != wantQ {
		t.Fatalf("status: %+v", st)
	}
	// The worker is stopped right after the report is marked completed.
	deadline := time.Now().Add(5 * time.Second)
	for e.stoppedCount() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.started) != 1 || e.started[0] != wantQ || len(e.stopped) != 1 {
		t.Fatalf("launcher: started %v stopped %v", e.started, e.stopped)
	}
}
