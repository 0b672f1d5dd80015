package sidekiq

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/internal/redistest"
)

// syncBuffer is a log sink the server's goroutines may share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) lines(substr string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, l := range strings.Split(s.b.String(), "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return out
}

// A quiet class logs its jobs at DEBUG and a summary per queue at stop;
// other classes keep Sidekiq's INFO line per job.
func TestQuietClassesLogASummary(t *testing.T) {
	db := redistest.New(t)
	reg := NewRegistry()
	reg.Register(func(context.Context, *Job) error { return nil }, "Row", "RowAlias")
	reg.Register(func(_ context.Context, j *Job) error {
		if len(j.Args) > 0 {
			return errors.New("row failed")
		}
		return nil
	}, "Other")
	reg.Register(func(context.Context, *Job) error { return errors.New("bad row") }, "BadRow")
	reg.LogQuietly("Row", "BadRow")
	logs := &syncBuffer{}
	srv := startServer(t, db, reg, Options{Queues: []QueueWeight{{Name: "q1"}},
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	var jobs []*Job
	for range 3 {
		j, _ := NewJob("Row", 1)
		jobs = append(jobs, j)
	}
	bad, _ := NewJob("BadRow")
	other, _ := NewJob("Other")
	for _, j := range append(jobs, bad, other) {
		j.Queue = "q1"
	}
	if _, err := srv.Client().PushBulk(context.Background(), append(jobs, bad, other)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "five jobs", func() bool { return len(logs.lines(`msg=done`))+len(logs.lines(`msg=fail`)) == 5 })
	srv.Stop()
	waitFor(t, 20*time.Second, "server stopped", func() bool {
		n, _ := redis.Int(db.Do(t, "SISMEMBER", "processes", srv.Identity()), nil)
		return n == 0
	})
	if got := logs.lines("level=INFO msg=done"); len(got) != 1 || !strings.Contains(got[0], "class=Other") {
		t.Errorf("INFO done lines %q, want only Other's", got)
	}
	if got := logs.lines("level=DEBUG msg=done"); len(got) != 3 {
		t.Errorf("DEBUG done lines %q, want the 3 rows", got)
	}
	if got := logs.lines("level=DEBUG msg=fail"); len(got) != 1 || !strings.Contains(got[0], "class=BadRow") {
		t.Errorf("DEBUG fail lines %q, want BadRow's", got)
	}
	sums := logs.lines(`msg="jobs summary"`)
	if len(sums) != 2 {
		t.Fatalf("summaries %q, want one for Row and one for BadRow", sums)
	}
	for _, s := range sums {
		ok := strings.Contains(s, "class=Row queue=q1 done=3 failed=0") ||
			strings.Contains(s, "class=BadRow queue=q1 done=0 failed=1")
		if !ok || !strings.Contains(s, "level=INFO") {
			t.Errorf("summary %q", s)
		}
	}
}

// While a quiet class runs, a summary line comes every SummaryInterval
// with the counts of that period and the running totals.
func TestJobLogSummaryEveryInterval(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	logs := &syncBuffer{}
	l := &jobLog{log: slog.New(slog.NewTextHandler(logs, nil)), quiet: func(string) bool { return true },
		now: func() time.Time { return now }}
	job := &Job{Class: "Row", JID: "j"}
	for range 5 {
		l.done(job, job.DisplayClass(), "tq", time.Millisecond)
		now = now.Add(SummaryInterval / 4)
	}
	l.fail(job, job.DisplayClass(), "tq", time.Millisecond, errors.New("x"), "retry")
	l.flush()
	sums := logs.lines(`msg="jobs summary"`)
	if len(sums) != 2 || !strings.Contains(sums[0], "done=5 failed=0") ||
		!strings.Contains(sums[1], "done=0 failed=1") || !strings.Contains(sums[1], "total_done=5 total_failed=1") {
		t.Fatalf("summaries %q", sums)
	}
	if len(logs.lines("msg=done")) != 0 {
		t.Errorf("per-job lines at INFO: %q", logs.lines("msg=done"))
	}
}
