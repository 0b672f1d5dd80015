package sidekiq

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/internal/redistest"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startServer runs a server in the background and stops it at cleanup.
func startServer(t *testing.T, db *redistest.DB, reg *Registry, opts Options) *Server {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	if opts.HeartbeatInterval == 0 {
		opts.HeartbeatInterval = 200 * time.Millisecond
		opts.ProcessTTL = 2 * time.Second
	}
	srv, err := NewServer(db.Pool, reg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("server run: %v", err)
			}
		case <-time.After(40 * time.Second):
			t.Errorf("server did not stop")
		}
	})
	waitFor(t, 5*time.Second, "process registered", func() bool {
		n, _ := redis.Int(db.Do(t, "SISMEMBER", "processes", srv.Identity()), nil)
		return n == 1
	})
	return srv
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestServerRunsPushedJobsWithArgs(t *testing.T) {
	db := redistest.New(t)
	reg := NewRegistry()
	var mu sync.Mutex
	got := map[int]string{}
	if err := reg.Register(func(ctx context.Context, j *Job) error {
		var n int
		var s string
		if err := j.ScanArgs(&n, &s); err != nil {
			return err
		}
		mu.Lock()
		got[n] = s
		mu.Unlock()
		return nil
	}, "Echo"); err != nil {
		t.Fatal(err)
	}
	c := NewClient(db.Pool, ClientOptions{})
	var jobs []*Job
	for i := range 500 {
		j, err := NewJob("Echo", i, "日本語")
		if err != nil {
			t.Fatal(err)
		}
		j.Queue = "q1"
		jobs = append(jobs, j)
	}
	if _, err := c.PushBulk(context.Background(), jobs); err != nil {
		t.Fatal(err)
	}
	startServer(t, db, reg, Options{Queues: []QueueWeight{{Name: "q1"}}, Concurrency: 8})
	waitFor(t, 10*time.Second, "500 jobs", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 500 })
	for i := range 500 {
		if got[i] != "日本語" {
			t.Fatalf("job %d got %q", i, got[i])
		}
	}
	waitFor(t, 5*time.Second, "stats flushed", func() bool {
		n, _ := redis.Int(db.Do(t, "GET", "stat:processed"), nil)
		return n == 500
	})
	if n, _ := redis.Int(db.Do(t, "LLEN", "queue:q1"), nil); n != 0 {
		t.Fatalf("queue not drained: %d", n)
	}
}

func TestFailuresRetryThenDieWithSidekiqFields(t *testing.T) {
	db := redistest.New(t)
	reg := NewRegistry()
	reg.Register(func(ctx context.Context, j *Job) error { return errors.New("boom") }, "Fails")
	reg.Register(func(ctx context.Context, j *Job) error { panic("kaboom") }, "Panics")
	srv := startServer(t, db, reg, Options{Queues: []QueueWeight{{Name: "q1"}}})
	c := srv.Client()
	j1, _ := NewJob("Fails", 1)
	j1.Queue, j1.Retry = "q1", json.RawMessage("3")
	j1.SetField("x_custom", map[string]any{"k": []int{1, 2}})
	j2, _ := NewJob("Panics")
	j2.Queue, j2.Retry = "q1", json.RawMessage("0")
	j3, _ := NewJob("Unknown::Job")
	j3.Queue, j3.Retry = "q1", json.RawMessage("0") // an unknown class retries as in Ruby; 0 retries: dead
	if _, err := c.PushBulk(context.Background(), []*Job{j1, j2, j3}); err != nil {
		t.Fatal(err)
	}
	db.Do(t, "LPUSH", "queue:q1", "not json")
	waitFor(t, 5*time.Second, "retry and dead entries", func() bool {
		r, _ := redis.Int(db.Do(t, "ZCARD", "retry"), nil)
		d, _ := redis.Int(db.Do(t, "ZCARD", "dead"), nil)
		return r == 1 && d == 3
	})
	members, _ := redis.ByteSlices(db.Do(t, "ZRANGE", "retry", 0, -1), nil)
	rj, err := ParseJob(members[0])
	if err != nil {
		t.Fatal(err)
	}
	if rj.JID != j1.JID || rj.StringField("error_message") != "boom" || rj.StringField("error_class") == "" {
		t.Fatalf("retry entry: %s", members[0])
	}
	var count int
	rj.Field("retry_count", &count)
	if count != 0 || !strings.Contains(string(members[0]), `"x_custom":{"k":[1,2]}`) {
		t.Fatalf("retry entry fields: %s", members[0])
	}
	if _, ok := rj.Fields["failed_at"]; !ok {
		t.Fatalf("no failed_at: %s", members[0])
	}
	if fa := string(rj.Fields["failed_at"]); strings.Contains(fa, ".") {
		t.Fatalf("Sidekiq 8 failed_at must be integer ms, got %s", fa)
	}
	dead, _ := redis.Strings(db.Do(t, "ZRANGE", "dead", 0, -1), nil)
	joined := strings.Join(dead, "\n")
	for _, want := range []string{"not json", `"error_class":"Pallarel::Panic"`, `"error_class":"NameError"`, "Unknown::Job"} {
		if !strings.Contains(joined, want) {
			t.Errorf("dead set lacks %q:\n%s", want, joined)
		}
	}
	// The worker lives on: a good job still runs.
	var ran atomic.Bool
	reg.Register(func(ctx context.Context, j *Job) error { ran.Store(true); return nil }, "Good")
	g, _ := NewJob("Good")
	g.Queue = "q1"
	c.Push(context.Background(), g)
	waitFor(t, 5*time.Second, "good job after failures", ran.Load)
}

func TestRetryPromotedBySchedulerAndSecondFailure(t *testing.T) {
	db := redistest.New(t)
	reg := NewRegistry()
	var runs atomic.Int32
	reg.Register(func(ctx context.Context, j *Job) error { runs.Add(1); return errors.New("again") }, "Fails")
	now := time.Now()
	clock := func() time.Time { return now }
	srv, err := NewServer(db.Pool, reg, Options{Queues: []QueueWeight{{Name: "q1"}}, Logger: quietLogger(), Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	// A job that already failed once, due now.
	db.Do(t, "ZADD", "retry", "1", `{"class":"Fails","args":[],"jid":"aaaaaaaaaaaaaaaaaaaaaaaa","queue":"q1","retry":2,"retry_count":0,"failed_at":1700000000123,"error_message":"x","error_class":"E","created_at":1700000000000}`)
	moved, err := newServerParts(srv).poller.runOnce(context.Background())
	if err != nil || moved != 1 {
		t.Fatalf("enqueueDue = %d, %v", moved, err)
	}
	raw, _ := redis.Bytes(db.Do(t, "LINDEX", "queue:q1", 0), nil)
	j, _ := ParseJob(raw)
	if et, ok := j.Time("enqueued_at"); !ok || et.UnixMilli() != now.UnixMilli() {
		t.Fatalf("enqueued_at not refreshed: %s", raw)
	}
	u := &UnitOfWork{Queue: "q1", Raw: raw}
	db.Do(t, "RPOP", "queue:q1")
	srv.fetcher.identity = "" // basic fetch: the job was popped
	srv.process(context.Background(), srv.procs[0], u)
	members, _ := redis.ByteSlices(db.Do(t, "ZRANGE", "retry", 0, -1, "WITHSCORES"), nil)
	if len(members) != 2 {
		t.Fatalf("want one retry entry, got %q", members)
	}
	rj, _ := ParseJob(members[0])
	var count int
	rj.Field("retry_count", &count)
	if count != 1 || string(rj.Fields["failed_at"]) != "1700000000123" {
		t.Fatalf("second failure fields: %s", members[0])
	}
	if ra, ok := rj.Time("retried_at"); !ok || ra.UnixMilli() != now.UnixMilli() {
		t.Fatalf("retried_at: %s", members[0])
	}
	// Third failure exhausts retry: 2.
	db.Do(t, "DEL", "retry")
	srv.process(context.Background(), srv.procs[0], &UnitOfWork{Queue: "q1", Raw: members[0]})
	if n, _ := redis.Int(db.Do(t, "ZCARD", "dead"), nil); n != 1 {
		t.Fatalf("exhausted job not dead")
	}
}

func TestScheduledJobsMoveOnceAcrossPollers(t *testing.T) {
	db := redistest.New(t)
	reg := NewRegistry()
	c := NewClient(db.Pool, ClientOptions{})
	var jobs []*Job
	for i := range 300 {
		j, _ := NewJob("X", i)
		j.Queue = "sq"
		j.At = time.Now().Add(-time.Second)
		jobs = append(jobs, j)
	}
	future, _ := NewJob("X", "later")
	future.Queue, future.At = "sq", time.Now().Add(time.Hour)
	jobs = append(jobs, future)
	if _, err := c.PushBulk(context.Background(), jobs); err != nil {
		t.Fatal(err)
	}
	raw, _ := redis.String(db.Do(t, "ZRANGE", "schedule", 0, 0), nil)
	if strings.Contains(raw, "enqueued_at") || strings.Contains(raw, `"at"`) {
		t.Fatalf("scheduled payload carries enqueued_at/at: %s", raw)
	}
	var wg sync.WaitGroup
	var total atomic.Int64
	for range 4 {
		srv, err := NewServer(db.Pool, reg, Options{Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			n, err := newServerParts(srv).poller.runOnce(context.Background())
			if err != nil {
				t.Error(err)
			}
			total.Add(int64(n))
		})
	}
	wg.Wait()
	if total.Load() != 300 {
		t.Fatalf("moved %d, want 300", total.Load())
	}
	if n, _ := redis.Int(db.Do(t, "LLEN", "queue:sq"), nil); n != 300 {
		t.Fatalf("queue has %d", n)
	}
	if n, _ := redis.Int(db.Do(t, "ZCARD", "schedule"), nil); n != 1 {
		t.Fatalf("future job moved too")
	}
}

func TestHeartbeatAndWebUISignals(t *testing.T) {
	db := redistest.New(t)
	reg := NewRegistry()
	release := make(chan struct{})
	reg.Register(func(ctx context.Context, j *Job) error { <-release; return nil }, "Slow")
	srv := startServer(t, db, reg, Options{Queues: []QueueWeight{{Name: "a", Weight: 3}, {Name: "b", Weight: 1}}, Concurrency: 3, Tag: "app"})
	j, _ := NewJob("Slow")
	j.Queue = "a"
	srv.Client().Push(context.Background(), j)
	id := srv.Identity()
	waitFor(t, 5*time.Second, "busy job in work hash", func() bool {
		n, _ := redis.Int(db.Do(t, "HLEN", id+":work"), nil)
		return n == 1
	})
	h, _ := redis.StringMap(db.Do(t, "HGETALL", id), nil)
	for _, f := range []string{"info", "busy", "beat", "quiet", "rss", "rtt_us", "concurrency"} {
		if _, ok := h[f]; !ok {
			t.Errorf("heartbeat lacks %s: %v", f, h)
		}
	}
	var info map[string]any
	json.Unmarshal([]byte(h["info"]), &info)
	if info["concurrency"].(float64) != 3 || info["identity"] != id || info["tag"] != "app" {
		t.Fatalf("info: %s", h["info"])
	}
	if !strings.Contains(h["info"], `"weights":[{"a":3,"b":1}]`) || !strings.Contains(h["info"], `"mode":"weighted"`) {
		t.Fatalf("info weights: %s", h["info"])
	}
	if !strings.Contains(h["info"], `"started_at":17`) || !strings.Contains(h["info"], ".") {
		t.Fatalf("started_at: %s", h["info"])
	}
	work, _ := redis.Strings(db.Do(t, "HVALS", id+":work"), nil)
	var w struct {
		Queue   string `json:"queue"`
		Payload string `json:"payload"`
		RunAt   int64  `json:"run_at"`
	}
	if err := json.Unmarshal([]byte(work[0]), &w); err != nil || w.Queue != "a" || !strings.Contains(w.Payload, j.JID) || w.RunAt < 1e9 {
		t.Fatalf("work entry: %s", work[0])
	}
	// Web UI Quiet.
	db.Do(t, "LPUSH", id+"-signals", "TSTP")
	waitFor(t, 5*time.Second, "quiet", func() bool {
		q, _ := redis.String(db.Do(t, "HGET", id, "quiet"), nil)
		return q == "true"
	})
	close(release)
	// Web UI Stop.
	db.Do(t, "LPUSH", id+"-signals", "TERM")
	waitFor(t, 10*time.Second, "process removed", func() bool {
		n, _ := redis.Int(db.Do(t, "SISMEMBER", "processes", id), nil)
		return n == 0
	})
}

func TestHardShutdownGivesBackRunningJobs(t *testing.T) {
	db := redistest.New(t)
	reg := NewRegistry()
	started := make(chan struct{}, 1)
	reg.Register(func(ctx context.Context, j *Job) error {
		started <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	}, "Stuck")
	srv, _ := NewServer(db.Pool, reg, Options{Queues: []QueueWeight{{Name: "q"}}, Timeout: 300 * time.Millisecond, Logger: quietLogger()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	j, _ := NewJob("Stuck", 1)
	j.Queue = "q"
	srv.Client().Push(ctx, j)
	<-started
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	raw, _ := redis.Strings(db.Do(t, "LRANGE", "queue:q", 0, -1), nil)
	if len(raw) != 1 || !strings.Contains(raw[0], j.JID) || strings.Contains(raw[0], "error_message") {
		t.Fatalf("queue after shutdown: %q", raw)
	}
	if n, _ := redis.Int(db.Do(t, "ZCARD", "retry"), nil); n != 0 {
		t.Fatal("cancelled job went to retry")
	}
	keys, _ := redis.Strings(db.Do(t, "KEYS", "pallarel:inflight|*"), nil)
	for _, k := range keys {
		if n, _ := redis.Int(db.Do(t, "LLEN", k), nil); n != 0 {
			t.Fatalf("in-flight list %s not empty", k)
		}
	}
}

func TestReliableFetchRecoversDeadProcessJobs(t *testing.T) {
	db := redistest.New(t)
	// A dead process left two jobs in flight and its heartbeat expired.
	db.Do(t, "SADD", "pallarel:inflight", "deadhost:1:abcdefabcdef|q")
	db.Do(t, "LPUSH", "pallarel:inflight|deadhost:1:abcdefabcdef|q", `{"class":"X","args":[1],"jid":"a1","queue":"q"}`, `{"class":"X","args":[2],"jid":"a2","queue":"q"}`)
	// A live one must be left alone.
	db.Do(t, "SADD", "pallarel:inflight", "livehost:2:abcdefabcdef|q")
	db.Do(t, "HSET", "livehost:2:abcdefabcdef", "info", "{}")
	db.Do(t, "LPUSH", "pallarel:inflight|livehost:2:abcdefabcdef|q", `{"class":"X","args":[3],"jid":"a3","queue":"q"}`)
	srv, _ := NewServer(db.Pool, NewRegistry(), Options{Queues: []QueueWeight{{Name: "q"}}, Logger: quietLogger()})
	rec := &recoverer{fetch: srv.fetcher, log: srv.log}
	n, err := rec.recoverOrphans(context.Background())
	if err != nil || n != 2 {
		t.Fatalf("recovered %d, %v", n, err)
	}
	got, _ := redis.Strings(db.Do(t, "LRANGE", "queue:q", 0, -1), nil)
	if len(got) != 2 || !strings.Contains(got[1], `"a1"`) {
		t.Fatalf("queue: %q (oldest must be next to run)", got)
	}
	if m, _ := redis.Int(db.Do(t, "SISMEMBER", "pallarel:inflight", "deadhost:1:abcdefabcdef|q"), nil); m != 0 {
		t.Fatal("dead owner still indexed")
	}
	if l, _ := redis.Int(db.Do(t, "LLEN", "pallarel:inflight|livehost:2:abcdefabcdef|q"), nil); l != 1 {
		t.Fatal("live process's job touched")
	}
}

func TestExecutionMetricsWritten(t *testing.T) {
	db := redistest.New(t)
	reg := NewRegistry()
	reg.Register(func(ctx context.Context, j *Job) error { return nil }, "Ok")
	reg.Register(func(ctx context.Context, j *Job) error { return errors.New("no") }, "Bad")
	srv := startServer(t, db, reg, Options{Queues: []QueueWeight{{Name: "m"}}})
	for _, class := range []string{"Ok", "Ok", "Bad"} {
		j, _ := NewJob(class)
		j.Queue, j.Retry = "m", json.RawMessage("false")
		srv.Client().Push(context.Background(), j)
	}
	waitFor(t, 5*time.Second, "metrics hash", func() bool {
		keys, _ := redis.Strings(db.Do(t, "KEYS", "j|*"), nil)
		for _, k := range keys {
			m, _ := redis.StringMap(db.Do(t, "HGETALL", k), nil)
			if m["Ok|p"] == "2" && m["Bad|p"] == "1" && m["Bad|f"] == "1" {
				return len(keys) == 2 // minute and ten-minute buckets (Sidekiq 8)
			}
		}
		return false
	})
}
