package interop

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/pallarel/pallarel/internal/redistest"
	"github.com/pallarel/pallarel/sidekiq"
)

// goFixture is a running Go server that has left behind what a busy Sidekiq
// installation shows: finished jobs, failures in the retry set (with
// backtraces), a dead job, a bad payload in the dead set, a scheduled job,
// waiting queues, and one job still running.
type goFixture struct {
	db      *redistest.DB
	srv     *sidekiq.Server
	done    <-chan error
	dialect sidekiq.Dialect
	release func() // lets the running job finish

	blockJID  string
	failJIDs  []string // retry set, error "boom from go <i>"
	panicJID  string   // retry set, a Go panic with its stack as backtrace
	deadJID   string   // dead set (retry: 0)
	schedJID  string   // schedule set, one hour ahead
	waitJID   string   // queue "waiting" (fixture dialect, enqueued 10 s ago)
	wait8JID  string   // queue "waiting8" (Dialect8, enqueued 10 s ago)
	okJIDs    []string // ran fine
	badJSON   string   // raw entry pushed to "work"; ends in the dead set
	processed int      // expected stat:processed
	failed    int      // expected stat:failed
}

// Queues: the server works "work"; failures are retried in "parked" (the
// retry_queue option), which nothing serves, so that Web UI "retry now"
// leaves the job visibly in its queue.
const (
	workQueue   = "work"
	parkedQueue = "parked"
)

func newGoFixture(t *testing.T, d sidekiq.Dialect, fails int) *goFixture {
	t.Helper()
	db := redistest.New(t)
	f := &goFixture{db: db, dialect: d}
	reg := sidekiq.NewRegistry()
	unblock := make(chan struct{})
	started := make(chan string, 1)
	var released bool
	f.release = func() {
		if !released {
			released = true
			close(unblock)
		}
	}
	t.Cleanup(f.release)
	// OkJob takes a few milliseconds: Sidekiq 8's job Metrics page shows
	// nothing for a class whose runs total 0 ms.
	mustRegister(t, reg, func(context.Context, *sidekiq.Job) error { time.Sleep(25 * time.Millisecond); return nil }, "Interop::OkJob")
	mustRegister(t, reg, func(_ context.Context, j *sidekiq.Job) error {
		var i int
		if err := j.ScanArgs(&i); err != nil {
			return err
		}
		return fmt.Errorf("boom from go %d", i)
	}, "Interop::FailJob")
	mustRegister(t, reg, func(context.Context, *sidekiq.Job) error { panic("go panic for the backtrace") }, "Interop::PanicJob")
	mustRegister(t, reg, errHandler("dead from go"), "Interop::DeadJob")
	mustRegister(t, reg, func(ctx context.Context, j *sidekiq.Job) error {
		started <- j.JID
		select {
		case <-unblock:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}, "Interop::BlockJob")
	// A huge poll average: the first poll (within 5 s of start) finds
	// nothing due, and retries (15 s or more ahead) stay in the retry set
	// for the whole test.
	f.srv, f.done = startServer(t, db, reg, sidekiq.Options{
		Queues: []sidekiq.QueueWeight{{Name: workQueue}}, Concurrency: 2, Dialect: d,
		PollAverage: time.Hour, Tag: "interop",
	})
	c := f.srv.Client()
	for i := range fails {
		j := mustJob(t, "Interop::FailJob", workQueue, i)
		_ = j.SetField("backtrace", true)
		_ = j.SetField("retry_queue", parkedQueue)
		f.failJIDs = append(f.failJIDs, mustPush(t, c, j))
	}
	pj := mustJob(t, "Interop::PanicJob", workQueue, "p")
	_ = pj.SetField("backtrace", 20)
	_ = pj.SetField("retry_queue", parkedQueue)
	f.panicJID = mustPush(t, c, pj)
	dj := mustJob(t, "Interop::DeadJob", workQueue, "d")
	dj.Retry = json.RawMessage("0")
	_ = dj.SetField("retry_queue", parkedQueue)
	f.deadJID = mustPush(t, c, dj)
	for i := range 2 {
		f.okJIDs = append(f.okJIDs, mustPush(t, c, mustJob(t, "Interop::OkJob", workQueue, i)))
	}
	f.badJSON = "not json " + strconv.FormatInt(time.Now().UnixNano(), 10)
	db.Do(t, "LPUSH", "queue:"+workQueue, f.badJSON)
	// Failures, the panic, the dead job and two successes; the bad JSON
	// counts nowhere, as in Ruby (processor.rb: dead set before stats).
	f.processed = fails + 1 + 1 + 2
	f.failed = fails + 1 + 1

	sj := mustJob(t, "Interop::OkJob", workQueue, "scheduled")
	sj.At = time.Now().Add(time.Hour)
	f.schedJID = mustPush(t, c, sj)
	tenAgo := func() time.Time { return time.Now().Add(-10 * time.Second) }
	f.waitJID = mustPush(t, sidekiq.NewClient(db.Pool, sidekiq.ClientOptions{Dialect: d, Now: tenAgo}),
		mustJob(t, "Interop::OkJob", "waiting", "w"))
	f.wait8JID = mustPush(t, sidekiq.NewClient(db.Pool, sidekiq.ClientOptions{Dialect: sidekiq.Dialect8, Now: tenAgo}),
		mustJob(t, "Interop::OkJob", "waiting8", "w8"))

	f.blockJID = mustPush(t, c, mustJob(t, "Interop::BlockJob", workQueue, "block"))
	select {
	case jid := <-started:
		if jid != f.blockJID {
			t.Fatalf("block job %s started, want %s", jid, f.blockJID)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the blocking job did not start")
	}
	waitFor(t, 20*time.Second, "go failures settled and flushed", func() bool {
		return redisInt(t, db, "ZCARD", "retry") == fails+1 &&
			redisInt(t, db, "ZCARD", "dead") == 2 &&
			redisInt(t, db, "GET", "stat:processed") == f.processed &&
			redisInt(t, db, "GET", "stat:failed") == f.failed &&
			redisString(t, db, "HGET", f.srv.Identity(), "busy") == "1"
	})
	return f
}
